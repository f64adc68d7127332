"""``--device HOST[:CONTAINER][:PERMISSIONS]``: a host device node in the container.

Spelled and checked as buildah's: the permissions are letters of ``rwm`` (default all),
the container path defaults to the host's, and the host path must name a character or
block device (``/dev/../etc/passwd`` is refused: it is a file). The container path is
resolved inside the rootfs like every mount target (``..`` stops at its root).

A device under /dev is made by the runtime in the run's own /dev (a tmpfs: nothing of it
reaches the image), as buildah does. One elsewhere is bound over a placeholder kiln makes
and takes away, where buildah would leave the node it made in the container's files.
Either way the device cgroup lets the run use it with the permissions asked for.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

from kiln.errors import InvalidArgument

from .options import Mount, parse_device


class Device(NamedTuple):
    """A host device node and where, and how, the container gets it."""

    source: str  # the host path
    path: str  # the container path, normalised
    permissions: str  # letters of "rwm"
    kind: str  # "c" or "b"
    major: int
    minor: int
    mode: int  # the host node's permission bits
    uid: int
    gid: int

    @property
    def under_dev(self) -> bool:
        """Whether the runtime makes it in the run's /dev (else kiln binds it)."""
        return self.path.startswith("/dev/")


def host_device(spec: str) -> Device:
    """The ``Device`` ``spec`` names: its host path must be a device node (links followed)."""
    source, dest, permissions = parse_device(spec)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise InvalidArgument(f"--device {spec!r}: {source} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"--device {spec!r}: {source}: {exc.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(
            f"--device {spec!r}: {source} is not a device node (a character or block device)"
        )
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return Device(source, dest, permissions, kind, major, minor, stat.S_IMODE(st.st_mode),
                  st.st_uid, st.st_gid)  # fmt: skip


def host_devices(specs: tuple[str, ...]) -> list[Device]:
    return [host_device(spec) for spec in specs]


def device_mounts(devices: list[Device]) -> list[Mount]:
    """The binds of the devices outside /dev (see the module docstring)."""
    return [Mount("bind", d.source, d.path, ("bind", "rw")) for d in devices if not d.under_dev]


def cgroup_rules(devices: list[Device]) -> list[dict[str, object]]:
    """``linux.resources.devices`` entries allowing each device."""
    return [
        {"allow": True, "type": d.kind, "major": d.major, "minor": d.minor,
         "access": d.permissions}
        for d in devices
    ]  # fmt: skip


def spec_devices(devices: list[Device]) -> list[dict[str, object]]:
    """``linux.devices`` entries: the nodes the runtime makes in the run's /dev."""
    return [
        {"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
         "fileMode": d.mode, "uid": d.uid, "gid": d.gid}
        for d in devices if d.under_dev
    ]  # fmt: skip
