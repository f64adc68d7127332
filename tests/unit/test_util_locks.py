"""kiln.util.locks: flock locks exclude other descriptors, threads and processes alike."""

from __future__ import annotations

import os
import threading

from kiln.util.locks import file_lock, try_lock


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
