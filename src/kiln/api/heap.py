"""The API server's C heap: few malloc arenas, and freed pages handed back after each
streamed operation.

Every request of ``kiln serve`` runs on a thread (a worker of the pool, or a thread of its
own for a build, pull or push), and glibc's malloc gives threads arenas of their own, up
to eight per core, each keeping the pages freed in it. SQLite, the Dockerfile parser and
the compressors allocate there, so the resident memory of a long-running server crept up
with every build and was never returned. Two arenas serve the server's few busy threads
as well; ``malloc_trim`` after each streamed operation returns what it freed.

Only the server process does this (never ``import kiln``); ``MALLOC_ARENA_MAX`` set by the
user wins; on a C library without these calls (musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import os

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
        lib.mallopt  # noqa: B018 - raises AttributeError where the call does not exist
        lib.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap the number of malloc arenas (before the server starts its threads); False when
    the user's ``MALLOC_ARENA_MAX`` decides or the C library has no such setting."""
    if _LIB is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIB.mallopt(_M_ARENA_MAX, arenas))


def trim() -> None:
    """Return the heap's free pages to the system."""
    if _LIB is not None:
        _LIB.malloc_trim(0)


__all__ = ["ARENAS", "limit_arenas", "trim"]
