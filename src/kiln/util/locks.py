"""``flock`` file locks.

``flock`` locks belong to an open file description, so every acquisition opens
its own descriptor: threads of one process exclude each other just as
processes do. Closing the descriptor (or the process dying) releases the lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["directory_lock", "file_lock", "try_lock"]


@contextmanager
def file_lock(path: str, exclusive: bool = True) -> Iterator[None]:
    """Hold ``path`` (created 0600 if missing) locked shared or exclusive for the ``with`` body."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextmanager
def directory_lock(path: str) -> Iterator[None]:
    """Hold directory ``path`` locked exclusive for the ``with`` body, adding no file to it
    (an OCI layout's writers updating its index.json). Where a directory cannot be locked
    (some NFS servers refuse flock on a read-only descriptor) the body runs unlocked."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # not lockable here: as before, last writer wins
        yield
    finally:
        os.close(fd)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
