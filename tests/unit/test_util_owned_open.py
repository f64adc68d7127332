"""``open_into``: the descriptor is in the caller's list as the call returns, and a failed
open leaves the list as it was."""

from __future__ import annotations

import errno
import os

import pytest

from kiln.util.owned_open import open_into


def test_the_descriptor_is_the_lists_and_names_the_file(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fds: list[int] = []
    try:
        by_path = open_into(fds, str(tmp_path / "f"), os.O_RDONLY)
        by_dir = open_into(fds, "f", os.O_RDONLY, dir_fd=dfd)
        assert fds == [by_path, by_dir]
        assert os.read(by_dir, 1) == b"x"
        assert os.fstat(by_path).st_ino == os.fstat(by_dir).st_ino
    finally:
        for fd in [*fds, dfd]:
            os.close(fd)


def test_a_file_made_gets_the_mode_asked(tmp_path):
    fds: list[int] = []
    try:
        open_into(fds, str(tmp_path / "new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    finally:
        for fd in fds:
            os.close(fd)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600


def test_a_failed_open_raises_its_error_and_adds_nothing(tmp_path):
    fds: list[int] = []
    with pytest.raises(FileNotFoundError) as failed:
        open_into(fds, str(tmp_path / "missing"), os.O_RDONLY)
    assert failed.value.errno == errno.ENOENT
    assert failed.value.filename == str(tmp_path / "missing")
    assert fds == []
