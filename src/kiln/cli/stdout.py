"""The CLI's standard output: a write that fails (``kiln images > /dev/full``) is an error
naming standard output, not a full disk blamed on kiln's store; once it has failed, what
is still buffered for it is dropped, so the exit's own flush does not fail again.

A reader that went away (``kiln images | head -1``) stays a ``BrokenPipeError``: click
ends the command quietly then, as other tools end.

Standard error carries progress, warnings and the ``Error:`` line, for a reader that may
have gone away while the work goes on (``kiln pull x 2>&1 >id | head -1``, a CI step whose
log pipe closed): there a write that finds its pipe closed sends the rest of stderr to
/dev/null and the command goes on (:func:`tolerate_closed_stderr`). A pull, push or build
is not lost, nor its exit status changed, because no one is left to read how it went.
"""

from __future__ import annotations

import os
import sys
from typing import Any


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


class _TolerantStream:
    """``stream`` whose writes and flushes survive a closed pipe (EPIPE)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        """From now on the descriptor writes to /dev/null; what was buffered is dropped."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what was buffered, now to /dev/null
        except (AttributeError, OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


def tolerate_closed_stderr() -> None:
    """``sys.stderr`` survives its reader going away (the command line's own process)."""
    if sys.stderr is not None and not isinstance(sys.stderr, _TolerantStream):
        sys.stderr = _TolerantStream(sys.stderr)
