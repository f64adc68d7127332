"""Deadlines for transfers from a server that answers, but too slowly to finish.

A socket timeout is per read: a registry or web server that sends one byte every few
seconds never trips it, and a pull or ``ADD <url>`` would wait for days. :class:`Pace` bounds a whole transfer
instead: a small document (a manifest, a token) must arrive within a deadline, and a
blob must average at least ``min_rate`` bytes a second once ``grace`` seconds have
passed (a slow consumer counts too, but no disk or unpacker is that slow).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kiln.errors import Unavailable

DEFAULT_MIN_RATE = 16 * 1024  # bytes per second, averaged over the whole transfer
DEFAULT_GRACE = 60.0  # seconds before the average rate is judged


class Pace:
    def __init__(
        self,
        what: str,
        *,
        deadline: float | None = None,
        min_rate: float = 0.0,
        grace: float = DEFAULT_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.deadline = deadline
        self.min_rate = min_rate
        self.grace = grace
        self._clock = clock
        self._start = clock()

    def check(self, received: int) -> None:
        """Raise Unavailable if the transfer, ``received`` bytes in, is past its bounds."""
        elapsed = self._clock() - self._start
        if self.deadline is not None and elapsed > self.deadline:
            raise Unavailable(
                f"{self.what}: not complete after {self.deadline:g} s "
                f"({received} bytes received); the registry is too slow or stalled"
            )
        if self.min_rate and elapsed > self.grace and received < self.min_rate * elapsed:
            raise Unavailable(
                f"{self.what}: {received} bytes in {elapsed:.0f} s is below the minimum "
                f"rate of {self.min_rate:g} bytes/s; the registry is too slow or stalled"
            )
