"""Unpacked layers and writable snapshots keyed by chain ID; overlayfs with a copy fallback.

Only snapshot/mount.py mounts. Must not import image, container, build, ops, cli, api.
"""

from kiln.snapshot.snapshotter import Snapshotter
from kiln.snapshot.spec import MountSpec

__all__ = ["MountSpec", "Snapshotter"]
