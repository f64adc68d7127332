"""Use cases every front end calls (build, pull, push, images, prune, save, load, ...).
No printing, no HTTP serving. Must not import cli or api.

Each use case is a plain function ``(ctx, ...) -> plain result``; ``ctx`` is a
:class:`kiln.ops.context.Context` from ``open_context(root, events=...)``. Progress
goes to ``ctx.events`` as :class:`kiln.ops.events.Event` values (``ctx.ev.step(...)``).

- ``context``, ``config``, ``events``: the wiring
- ``transports``: parsing ``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``, ``docker://``
- ``images``: list, inspect, history, exists, tag, untag, rmi, prune, tree, diff
- ``archives``: save, load, import;  ``file_transfer``: push/pull as front ends call them,
  a list to ``manifests``/``manifest_transfer``, one image to ``transfer`` (file transports
  through ``kiln.image.transports``, ``docker://`` to ``kiln.ops.registry.push/pull``)
"""
