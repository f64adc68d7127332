"""``flock`` file locks.

``flock`` locks belong to an open file description, so every acquisition opens
its own descriptor: threads of one process exclude each other just as
processes do. Closing the descriptor (or the process dying) releases the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.errors import Conflict
from kiln.util.held_signals import opened

__all__ = ["directory_lock", "file_lock", "try_lock"]


@contextmanager
def file_lock(path: str, exclusive: bool = True) -> Iterator[None]:
    """Hold ``path`` (created 0600 if missing) locked shared or exclusive for the ``with`` body."""
    # closing the last descriptor releases the lock
    with opened(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) as fd:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


@contextmanager
def directory_lock(
    path: str, *, wait: float | None = None, what: str = "directory"
) -> Iterator[None]:
    """Hold directory ``path`` locked exclusive for the ``with`` body, adding no file to it
    (an OCI layout's writers updating its index.json). Where a directory cannot be locked
    (some NFS servers refuse flock on a read-only descriptor) the body runs unlocked.

    ``wait``: seconds to wait for the lock, then :class:`Conflict` naming ``what``, the
    path and the process(es) holding it (None: as long as it takes). A directory any user
    can lock (``/tmp``) must not let one of them hang the command."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            if wait is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            elif not _lock_within(fd, wait):
                raise Conflict(
                    f"{what} {path} is locked by {_holders(fd)} and was not released "
                    f"in {wait:g} s; end that process, or use a directory of your own"
                )
        except OSError:
            pass  # not lockable here: as before, last writer wins
        yield
    finally:
        os.close(fd)


def _lock_within(fd: int, wait: float) -> bool:
    """Take an exclusive lock on ``fd`` within ``wait`` seconds (polled: flock has no timeout)."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while not try_lock(fd):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)
    return True


MAX_PROC_LOCKS_BYTES = 4 << 20  # a line a lock: thousands of locks at most in practice


def _holders(fd: int) -> str:
    """Who holds a flock on ``fd``'s file, from ``/proc/locks``: ``pid 12 (sleep)``, or
    ``another process`` when the kernel does not say (another PID namespace, no /proc)."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", "rb") as f:
            table = f.read(MAX_PROC_LOCKS_BYTES).decode("ascii", "replace")
    except OSError:
        return "another process"
    pids: list[int] = []
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 2389 08:01:1234 0 EOF"; waiters' lines have "->"
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != ident:
            continue
        pid = int(fields[4]) if fields[4].isdigit() else 0  # -1 or 0: another namespace's
        if pid > 0 and pid not in pids:
            pids.append(pid)
    if not pids:
        return "another process"
    return ", ".join(f"pid {pid}{_command(pid)}" for pid in pids[:5])


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return " (" + f.read(64).decode("utf-8", "replace").strip() + ")"
    except OSError:
        return ""


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
