"""System helpers every layer may use (L0): small, with no kiln dependencies.

Owns:

- ``atomic``: files that appear whole or not at all (a temp file beside the
  target, fsynced, renamed, the directory fsynced), with an option that refuses
  symbolic links and foreign directories (credentials);
- ``output``: writing a file a user named (``-o``, ``--iidfile``,
  ``--digestfile``, ``dest=``): regular files and new paths are replaced
  atomically, devices, FIFOs and terminals are written through, never replaced;
- ``locks``: ``flock`` file locks;
- ``inroot``: the one in-root path resolver (openat2 ``RESOLVE_IN_ROOT`` or an
  ``O_NOFOLLOW`` walk) for paths an image, a layer or a build context names;
- ``redact``: credentials in URLs and references masked (``user:***@``) in
  everything kiln prints, logs or answers.
- ``gc_pause``: the cyclic garbage collector paused while a block builds many
  objects that form no cycles (a list of thousands of images).
- ``arguments``: a library call's list of strings checked (a string is refused).

Imports nothing from kiln but ``kiln.errors``; never imports a sibling package.
"""
