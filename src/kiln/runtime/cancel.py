"""Waiting for a container process while watching the caller's cancel flag.

``RunOptions.cancel`` is a ``threading.Event``. When it is set while the process runs, the
process gets SIGTERM, then SIGKILL once ``RunOptions.cancel_grace`` seconds have passed
(PID 1 of a container ignores SIGTERM unless it handles it), and, should even that not end
it, the caller's last resort (``force``). The run then returns the exit code as usual; the
caller sees its flag set and raises ``kiln.errors.Cancelled``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

POLL_SECONDS = 0.05
FORCE_AFTER_KILL_SECONDS = 5.0


def interrupt(signum: int, _frame: object) -> None:
    """Signal handler while a cancellable run (a build's RUN) waits in the main thread:
    kiln's SIGINT/SIGTERM/... stop kiln, as buildah stops a build on Ctrl-C. Forwarding
    them instead would do nothing: the container's PID 1 ignores signals it does not
    handle. The waiting code kills the process and cleans up on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


def wait_cancellable(
    poll: Callable[[], int | None],
    cancel: threading.Event,
    stop: Callable[[int], None],
    grace: float,
    force: Callable[[], None] | None = None,
) -> int:
    """Wait until ``poll()`` gives an exit code; on ``cancel``, ``stop`` the process first."""
    while True:
        code = poll()
        if code is not None:
            return code
        if cancel.wait(POLL_SECONDS):
            break
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
