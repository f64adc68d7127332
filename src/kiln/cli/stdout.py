"""The CLI's standard output: a write that fails (``kiln images > /dev/full``) is an error
naming standard output, not a full disk blamed on kiln's store; once it has failed, what
is still buffered for it is dropped, so the exit's own flush does not fail again.

A reader that went away (``kiln images | head -1``) stays a ``BrokenPipeError``: click
ends the command quietly then, as other tools end.
"""

from __future__ import annotations

import os
import sys


def write_stdout(text: str) -> None:
    """Write ``text`` (``""``: only what is buffered) to standard output now."""
    try:
        if sys.stdout is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        from kiln.util.output import STDOUT, write_error  # start-up: only when it fails

        discard_stdout()
        raise write_error(STDOUT, exc) from None


def discard_stdout() -> None:
    """Standard output cannot take more (its reader went away, its disk is full): what is
    still buffered for it, and whatever comes, goes to /dev/null."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no stdout, or not a descriptor (a test's)
        pass
