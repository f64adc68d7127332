"""Open a descriptor straight into a list a ``finally`` closes, with no point between.

Python runs a Ctrl-C's handler just after a call returns, so in::

    fd = os.open(path, flags)
    try: ...
    finally: os.close(fd)

a signal landing as ``os.open`` returns raises before ``fd`` is stored and the descriptor
is nobody's: in a long-lived process (``kiln serve``, a program using kiln) it stays open.
``util.held_signals.opened`` holds the signals over the open, ~9 µs; too dear per file of a
layer or a COPY. ``open_into`` lets C append the descriptor to a list the caller made before
its ``try`` (``list += map(os.open, ...)``: no bytecode runs between the open and the
append), ~0.5 µs more than a bare open::

    fds: list[int] = []
    try:
        fd = open_into(fds, path, flags)
        ...
    finally:
        for fd in fds:
            os.close(fd)

One descriptor a list: a loop's jump back is a point too, so a second one would be left
open by a Ctrl-C after the first close.
"""

from __future__ import annotations

import os
from functools import partial


def open_into(
    fds: list[int], path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
) -> int:
    """``os.open(path, flags, mode, dir_fd=dir_fd)``, appended to ``fds`` before a signal
    can land; returns it."""
    if dir_fd is None:  # no ``partial`` to make: ~0.5 us of the ~1 a file
        fds += map(os.open, (path,), (flags,), (mode,))
    else:
        fds += map(partial(os.open, mode=mode, dir_fd=dir_fd), (path,), (flags,))
    return fds[-1]


__all__ = ["open_into"]
