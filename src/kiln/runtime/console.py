"""A pseudo-terminal for a ``terminal`` run when kiln has none (CI, a pipe, /dev/null).

runc's foreground terminal mode makes its stdin the console's other end (it opens
/dev/tty: 'no such device or address' without one). As buildah does, kiln then gives
runc a terminal of its own: runc starts in a new session with a pseudo-terminal's slave as
its controlling terminal and stdio, and kiln relays the master: what the container
writes, to kiln's standard output; kiln's standard input, to the container. When kiln's
standard output is a terminal, its window size is the container's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import termios
import threading
import tty
from typing import Any

__all__ = ["OwnTerminal", "needs_own_terminal"]

CHUNK = 65536


def _fd(stream: Any, default: int) -> int:
    if stream is None:
        return default
    return stream if isinstance(stream, int) else int(stream.fileno())


def needs_own_terminal(terminal: bool, stdin: Any) -> bool:
    """Whether a run asking for ``terminal`` needs kiln's own: its stdin is no terminal."""
    return terminal and not os.isatty(_fd(stdin, 0))


def _take_controlling_terminal() -> None:  # in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class OwnTerminal:
    """The pseudo-terminal and its relays for one run: ``popen_args()`` for runc's
    ``Popen``, ``started()`` once it runs, ``finish()`` once it has exited."""

    def __init__(self, stdin: Any, stdout: Any) -> None:
        self._in, self._out = _fd(stdin, 0), _fd(stdout, 1)
        self.master, self.slave = os.openpty()
        # raw from the start, as runc makes it: no echo of input sent before runc is ready
        # (the container's own terminal echoes, as any terminal does)
        tty.setraw(self.slave)
        if os.isatty(self._out):
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(self._out, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        self._output = threading.Thread(target=self._pump_out, name="kiln-tty-out", daemon=True)
        self._input = threading.Thread(target=self._pump_in, name="kiln-tty-in", daemon=True)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)

    def popen_args(self) -> dict[str, Any]:
        return {
            "stdin": self.slave, "stdout": self.slave, "stderr": self.slave,
            "start_new_session": True, "preexec_fn": _take_controlling_terminal,
        }  # fmt: skip

    def started(self) -> None:
        os.close(self.slave)  # runc holds it now: its exit ends the output (EIO)
        self.slave = -1
        self._output.start()
        self._input.start()

    def finish(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the rest of the output, stop the input, close the terminal."""
        if self._output.is_alive():
            self._output.join(timeout)
        os.write(self._stop_w, b"x")
        if self._input.is_alive():
            self._input.join(timeout)
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1
        os.close(self._stop_w)
        if not self._output.is_alive() and not self._input.is_alive():
            os.close(self.master)
            os.close(self._stop_r)
        # else a relay is stuck writing (a full stdout, a container not reading): its fds
        # stay open, never closed under a thread still using them

    def _pump_out(self) -> None:
        with contextlib.suppress(OSError):  # EIO: every slave is closed (runc exited)
            while data := os.read(self.master, CHUNK):
                view = memoryview(data)
                while view:
                    view = view[os.write(self._out, view) :]

    def _pump_in(self) -> None:
        # the end of input is not passed on (as docker run -t without -i): the container's
        # program decides when to stop; finish() stops this relay through the stop pipe
        poller = select.poll()
        poller.register(self._in, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        with contextlib.suppress(OSError):
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._stop_r in ready:
                    return
                data = os.read(self._in, CHUNK)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(self.master, view) :]
