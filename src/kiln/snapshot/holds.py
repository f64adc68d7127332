"""Which active snapshots a live process is using.

Creating a snapshot takes a shared ``flock`` on its directory, held until this process
removes or commits it (or ends). A sweep removes only snapshots nobody holds, however
old they are: a RUN with a bind mount from another image keeps its read-only view for
as long as it runs, with no container record naming it. A snapshot left by a process
that died is held by nobody, and goes once its grace period is over.
"""

from __future__ import annotations

import fcntl
import os
import threading

from kiln.util.owned_open import open_into

_held: dict[str, int] = {}  # snapshot directory -> the descriptor holding it
_lock = threading.Lock()


def hold(path: str) -> None:
    """Hold the snapshot directory ``path`` for this process (idempotent)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_SH)
    with _lock:
        old = _held.pop(path, None)
        _held[path] = fd
    if old is not None:
        os.close(old)


def release(path: str) -> None:
    """Stop holding ``path`` (nothing if this process does not hold it)."""
    with _lock:
        fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


def in_use(path: str) -> bool:
    """Whether any process (this one included) holds the snapshot directory ``path``."""
    fds: list[int] = []
    try:
        fd = open_into(fds, path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except BlockingIOError:
        return True
    finally:
        for fd in fds:
            try:  # not ``contextlib.suppress``: its call would be a point before the close
                os.close(fd)
            except OSError:
                pass
    return False
