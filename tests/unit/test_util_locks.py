"""kiln.util.locks: flock locks exclude other descriptors, threads and processes alike."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from kiln.errors import Conflict
from kiln.util.locks import directory_lock, file_lock, try_lock


def _other_fd(path) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def test_exclusive_lock_excludes_another_descriptor_until_released(tmp_path):
    path = str(tmp_path / "l.lock")
    with file_lock(path, exclusive=True):
        fd = _other_fd(path)
        try:
            assert not try_lock(fd)
        finally:
            os.close(fd)
    fd = _other_fd(path)
    try:
        assert try_lock(fd)
    finally:
        os.close(fd)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)


def test_shared_locks_coexist_and_block_an_exclusive_one(tmp_path):
    path = str(tmp_path / "l.lock")
    with file_lock(path, exclusive=False), file_lock(path, exclusive=False):
        fd = _other_fd(path)
        try:
            assert not try_lock(fd)
        finally:
            os.close(fd)


def test_a_waiting_thread_gets_the_lock_when_it_is_released(tmp_path):
    path = str(tmp_path / "l.lock")
    order: list[str] = []
    held = threading.Event()

    def other() -> None:
        held.wait(10)
        with file_lock(path):
            order.append("other")

    t = threading.Thread(target=other, daemon=True)
    with file_lock(path):
        t.start()
        held.set()
        t.join(timeout=0.3)
        assert t.is_alive(), "a second exclusive lock was granted while the first was held"
        order.append("first")
    t.join(timeout=10)
    assert order == ["first", "other"]


def test_a_bounded_directory_lock_waits_for_a_release_then_gives_up(tmp_path):
    """``wait``: a lock released in time is taken; one held past it is a Conflict naming
    the directory and the holder, and the body never runs."""
    got = threading.Event()

    def other() -> None:
        with directory_lock(str(tmp_path), wait=60):
            got.set()

    t = threading.Thread(target=other, daemon=True)
    with directory_lock(str(tmp_path)):
        t.start()
        t.join(timeout=0.3)
        assert t.is_alive() and not got.is_set(), "a second lock was granted while held"
    t.join(timeout=60)
    assert got.is_set()

    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held_by = f"the store {tmp_path} is locked by pid {os.getpid()}"
        with (
            pytest.raises(Conflict, match=held_by),
            directory_lock(str(tmp_path), wait=0.05, what="the store"),
        ):
            pytest.fail("the body ran without the lock")
    finally:
        os.close(fd)
