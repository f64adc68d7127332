"""``kiln.util.spread``: a store's snapshot work directory has new directories placed as
top-level ones (ext4's "top of directory hierarchy" flag), and a file system without the
flag, or a path that is no directory, is no error."""

from __future__ import annotations

import array
import fcntl
import os

import pytest

from kiln.snapshot import Snapshotter
from kiln.util.spread import FS_TOPDIR_FL, spread_subdirectories

_FS_IOC_GETFLAGS = 0x80086601


def flags_of(path) -> int | None:
    """The inode flags of ``path`` (None: this file system has none)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def needs_inode_flags(path) -> None:
    if flags_of(path) is None:
        pytest.skip("the file system of the test's directory has no inode flags")


def test_a_directory_is_marked_once_and_keeps_its_other_flags(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    needs_inode_flags(d)
    before = flags_of(d)
    if not spread_subdirectories(str(d)):
        pytest.skip("this file system refuses the top-of-hierarchy flag")
    assert flags_of(d) == before | FS_TOPDIR_FL
    assert spread_subdirectories(str(d))  # already marked
    assert flags_of(d) == before | FS_TOPDIR_FL


def test_a_snapshot_store_spreads_the_directories_it_makes_in_tmp(tmp_path):
    needs_inode_flags(tmp_path)
    probe = tmp_path / "probe"
    probe.mkdir()
    if not spread_subdirectories(str(probe)):
        pytest.skip("this file system refuses the top-of-hierarchy flag")
    snaps = Snapshotter(str(tmp_path / "snapshots"), driver="overlay")
    try:
        assert flags_of(os.path.join(snaps.root, "tmp")) & FS_TOPDIR_FL
        # only tmp/: snapshots and layers are made there and renamed into place
        assert not flags_of(os.path.join(snaps.root, "layers")) & FS_TOPDIR_FL
    finally:
        snaps.close()


def test_a_file_a_missing_path_or_a_symlink_is_false_not_an_error(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    assert spread_subdirectories(str(tmp_path / "file")) is False
    assert spread_subdirectories(str(tmp_path / "missing")) is False
    assert spread_subdirectories(str(tmp_path / "link")) is False  # never through a link
    if flags_of(tmp_path / "dir") is not None:
        assert not flags_of(tmp_path / "dir") & FS_TOPDIR_FL
