"""``kiln.snapshot.mount.is_mountpoint``: what a build step asks before it mounts a rootfs."""

from __future__ import annotations

import os

import pytest

from kiln.snapshot import mount as mount_module
from kiln.snapshot.mount import is_mountpoint, mounted
from kiln.snapshot.spec import MountSpec

pytestmark = pytest.mark.root


def _no_mountinfo(*_args: object, **_kwargs: object) -> object:
    raise OSError("reading /proc/self/mountinfo is not allowed in this test")


def test_a_bind_mount_of_the_same_file_system_is_seen_without_mountinfo(
    tmp_path, monkeypatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    source = tmp_path / "source"
    source.mkdir()
    # the host's mount table can be long: the answer comes from one statx, not from it
    monkeypatch.setattr(mount_module, "open", _no_mountinfo, raising=False)
    with mounted(MountSpec("bind", str(source), ("rbind", "rw")), str(tmp_path)) as target:
        assert is_mountpoint(target)  # same device as its parent, another inode
        assert not is_mountpoint(str(source))  # the mount's source is no mount point
        (tmp_path / "link").symlink_to(target)
        assert is_mountpoint(str(tmp_path / "link"))  # as the directory a link leads to
    assert not is_mountpoint(target)
    assert not is_mountpoint(str(tmp_path / "gone" / "x"))


def test_without_statx_the_mount_table_answers(tmp_path, monkeypatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    source = tmp_path / "source"
    source.mkdir()
    monkeypatch.setattr(mount_module, "_statx", None)  # a C library without statx
    with mounted(MountSpec("bind", str(source), ("rbind", "rw")), str(tmp_path)) as target:
        assert is_mountpoint(target)
        assert not is_mountpoint(str(source))
    assert not is_mountpoint(target)
