"""Waiting for a container process while watching the caller's cancel flag.

``RunOptions.cancel`` is a ``threading.Event``. When it is set while the process runs, the
process gets SIGTERM, then SIGKILL once ``RunOptions.cancel_grace`` seconds have passed
(PID 1 of a container ignores SIGTERM unless it handles it), and, should even that not end
it, the caller's last resort (``force``). The run then returns the exit code as usual; the
caller sees its flag set and raises ``kiln.errors.Cancelled``.

Given the process's ``pid``, the wait wakes the moment the process exits (a pidfd), not at
the next tick of the cancel poll: a RUN step is not rounded up to ``POLL_SECONDS``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator

from kiln.errors import raise_interrupted

POLL_SECONDS = 0.05
#: what stops kiln, or is passed on to the container, while a container process runs
RUN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
FORCE_AFTER_KILL_SECONDS = 5.0


def stop_kiln(signum: int, frame: object, replaced: object) -> None:
    """Signal handler (``held_signals.handlers_swapped``) while a cancellable run (a build's
    RUN) waits in the main thread: kiln's SIGINT/SIGTERM/... stop kiln, as buildah stops a
    build on Ctrl-C. Forwarding them instead would do nothing: the container's PID 1 ignores
    signals it does not handle. The waiting code kills the process and cleans up on the way
    out. The handler the run replaced does the stopping (the command line's notes the
    signal, for its exit code); one ignored stays ignored (``nohup``); one that would have
    ended the process on the spot (SIGHUP, SIGQUIT) stops kiln instead, so that the
    container and its mounts go first."""
    if callable(replaced):
        replaced(signum, frame)
    elif replaced != signal.SIG_IGN:
        raise_interrupted(signum, frame)


def wait_cancellable(
    poll: Callable[[], int | None],
    cancel: threading.Event,
    stop: Callable[[int], None],
    grace: float,
    force: Callable[[], None] | None = None,
    pid: int | None = None,
) -> int:
    """Wait until ``poll()`` gives an exit code; on ``cancel``, ``stop`` the process first.

    ``pid`` (a child not reaped yet): wake as soon as it exits instead of polling."""
    with _exit_watch(pid) as exited:
        while True:
            code = poll()
            if code is not None:
                return code
            if exited is None:
                if cancel.wait(POLL_SECONDS):
                    break
            elif cancel.is_set():
                break
            else:
                exited.poll(POLL_SECONDS * 1000)
    started = time.monotonic()
    stop(int(signal.SIGTERM))
    killed = forced = False
    while True:
        code = poll()
        if code is not None:
            return code
        elapsed = time.monotonic() - started
        if not killed and elapsed >= grace:
            stop(int(signal.SIGKILL))
            killed = True
        if not forced and force is not None and elapsed >= grace + FORCE_AFTER_KILL_SECONDS:
            force()
            forced = True
        time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def _exit_watch(pid: int | None) -> Iterator[select.poll | None]:
    """A poll object that becomes readable when child ``pid`` exits (None: not available,
    e.g. no pidfd on this kernel: the caller polls at POLL_SECONDS instead)."""
    fd = None
    if pid is not None and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(pid)
    if fd is None:
        yield None
        return
    try:
        watch = select.poll()
        watch.register(fd, select.POLLIN)
        yield watch
    finally:
        os.close(fd)
