"""Which of a layer's xattrs kiln sets on disk when it unpacks the layer.

A layer tar's PAX headers may carry any ``SCHILY.xattr.*`` record. Unpacked as root, most
go to disk, as containers/storage (podman, buildah), containerd and moby put them there:
``security.capability``, ``security.ima``, ``user.*``, ``trusted.*``. Two kinds never do:

- overlayfs' own metadata, ``trusted.overlay.*`` (and ``user.overlay.*``, what a rootless
  ``userxattr`` mount reads): opaque, redirect, origin, metacopy, upper, nlink, whiteout(s)
  on a layer's own entries would make the mounted tree differ from the tar (a lower
  directory hidden, another layer's directory shown in its place, a file made a whiteout),
  an overlay mount differ from the copy driver's merge, and a store differ from another
  that pulled the same digest. kiln marks opaque directories itself, from ``.wh..wh..opq``.
  The references write these records as they come (podman 4.3 and buildah 1.28 mount such
  a layer hidden and redirected); kiln does not.
- ``security.selinux``: the host's policy labels files, not an image (containers/storage
  drops it too).

What a commit writes into a layer is the narrower ``kiln.archive.changes.read_xattrs``.
"""

from __future__ import annotations

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_NEVER_FROM_LAYER = frozenset({"security.selinux"})


def layer_may_set(name: str) -> bool:
    """Whether the xattr ``name`` a layer carries may be set on the unpacked file."""
    return not name.startswith(OVERLAY_XATTR_PREFIXES) and name not in _NEVER_FROM_LAYER


__all__ = ["OVERLAY_XATTR_PREFIXES", "layer_may_set"]
