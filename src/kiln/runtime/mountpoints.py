"""Create the mountpoints a run needs in the rootfs, and take the placeholders away again.

The runtime would otherwise create missing mountpoints itself (``/etc/hosts``, a volume's
directory, ``/proc``...) and they would end up in the committed layer. Like buildah, kiln
creates them beforehand through in-root resolution, remembers exactly what it created,
and after the run removes what is still an empty placeholder.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from kiln.errors import InvalidArgument

from . import inroot
from .options import RunOptions

SYSTEM_DIRS = ("/proc", "/dev", "/sys")
ETC_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")


@dataclass
class Placeholders:
    """What kiln created in one rootfs, in creation order."""

    rootfs: str
    created: list[str] = field(default_factory=list)

    def cleanup(self) -> list[str]:
        """Remove the placeholders that are still empty; returns what was removed."""
        removed = []
        for path in reversed(self.created):
            try:
                if inroot.remove_if_placeholder(self.rootfs, path):
                    removed.append(path)
            except OSError:
                continue
        self.created = []
        return removed


def _source_is_dir(source: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(source).st_mode)
    except FileNotFoundError:
        raise InvalidArgument(
            f"mount source {source!r} does not exist: create it or fix the path"
        ) from None


def wanted(opts: RunOptions) -> list[tuple[str, bool]]:
    """(in-container path, is a directory) for every mountpoint the run uses."""
    points = [(p, True) for p in SYSTEM_DIRS]
    points += [(p, False) for p in ETC_FILES]
    for mount in opts.mounts:
        is_dir = mount.type == "tmpfs" or _source_is_dir(mount.source)
        points.append((mount.destination, is_dir))
    return points


def prepare(opts: RunOptions, rootfs: str) -> Placeholders:
    """Create missing mountpoints (and the working directory, which is kept) in ``rootfs``."""
    placeholders = Placeholders(rootfs)
    try:
        for path, is_dir in wanted(opts):
            try:
                placeholders.created += inroot.ensure(rootfs, path, directory=is_dir)
            except NotADirectoryError:
                raise InvalidArgument(
                    f"cannot mount on {path}: a parent of it is not a directory in the container"
                ) from None
        try:
            inroot.ensure(rootfs, opts.cwd or "/", directory=True)
        except NotADirectoryError:
            raise InvalidArgument(
                f"working directory {opts.cwd} is not a directory in the container"
            ) from None
    except BaseException:
        placeholders.cleanup()
        raise
    return placeholders
