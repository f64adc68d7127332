"""Stopping work that was given up: a Ctrl-C, a failed sibling, an API client gone away.

The work's cancel flag travels in a ``ContextVar``; pool threads see it when they run in a
copy of the context that started them (``contextvars.copy_context().run``).

- :func:`cancel_scope`: for the owner of a piece of work (a pull's or push's pool) that
  must stop it on its own account; yields a flag to ``set_for(reason)``. The enclosing
  flag, if any, still stops the work too.
- :class:`LinkedFlag`: the flag ``cancel_scope`` makes: set by its owner, and read as set
  once the enclosing flag is; setting it leaves the enclosing one alone. Make one directly
  where the owner holds it beyond one block (a build's cancel), with ``cancelled_by``.
- :func:`cancel_flag`: for a wait that can look at a flag itself (a socket read in short
  slices, a read of a blob being uploaded): this context's flag, or None; then
  :func:`raise_if_cancelled` between slices.
- :func:`when_cancelled`: for a wait that cannot look (urllib's socket reads, a child
  process): a watcher calls ``stop`` once the flag is set while the block runs.
- :func:`cancelled_by`: runs a block under a flag made elsewhere (the API server's
  :class:`CancelFlag`, set when the client goes away or the server stops).

This module stops work; for a few statements that must not stop halfway (a commit and
its clean-up), hold the signals instead with ``kiln.util.held_signals.signals_held``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kiln.errors import Cancelled


class CancelFlag(threading.Event):
    """A cancel flag that says why it was set (the client went away, the server stops):
    the :class:`Cancelled` raised for it says so."""

    reason = "the client disconnected"

    def set_for(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
        self.set()


class LinkedFlag(CancelFlag):
    """The cancel flag of one piece of work inside another's: set by that work itself (a
    Ctrl-C, a failing sibling), and read as set too once the enclosing flag (``outer``: a
    client that went away) is. Setting it never sets ``outer``: that one is its owner's."""

    POLL_SECONDS = 0.05  # how often ``wait`` looks at ``outer``

    def __init__(self, outer: threading.Event | None, reason: str = "stopped") -> None:
        super().__init__()
        self._outer = outer
        self._own_reason = reason

    def is_set(self) -> bool:
        return super().is_set() or (self._outer is not None and self._outer.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = self.POLL_SECONDS
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return False
            super().wait(left)
        return True

    @property
    def reason(self) -> str:
        if not super().is_set() and self._outer is not None and self._outer.is_set():
            return getattr(self._outer, "reason", CancelFlag.reason)
        return self._own_reason

    @reason.setter
    def reason(self, value: str) -> None:
        self._own_reason = value


@contextmanager
def cancel_scope() -> Iterator[CancelFlag]:
    """Work in this block (and threads started in a copy of its context) runs under a flag
    of its own, which the block's owner sets to stop it (``set_for``): a blocked socket
    read of a worker thread ends within a slice, as the API's own flag ends it. The flag
    enclosing the block, if any, still stops it too."""
    flag = LinkedFlag(cancel_flag())
    with cancelled_by(flag):
        yield flag


def cancelled_error(flag: threading.Event | None) -> Cancelled:
    """The error for work whose ``flag`` is set."""
    reason = getattr(flag, "reason", CancelFlag.reason)
    return Cancelled(f"{reason}; the operation was cancelled")


_FLAG: ContextVar[threading.Event | None] = ContextVar("kiln_cancel_flag", default=None)


@contextmanager
def cancelled_by(flag: threading.Event) -> Iterator[None]:
    """Work in this block (and in threads started in a copy of its context) stops its waits
    once ``flag`` is set."""
    token = _FLAG.set(flag)
    try:
        yield
    finally:
        _FLAG.reset(token)


def cancel_flag() -> threading.Event | None:
    """This context's flag; None when nothing can cancel the work."""
    return _FLAG.get()


def raise_if_cancelled(flag: threading.Event | None) -> None:
    if flag is not None and flag.is_set():
        raise cancelled_error(flag)


_WATCH_SLICE = 0.25  # seconds between a watcher's looks at whether its block has ended


@contextmanager
def when_cancelled(stop: Callable[[], None]) -> Iterator[threading.Event | None]:
    """For a wait that cannot look at the flag itself (urllib's socket reads, a child
    process): a watcher thread calls ``stop`` (shut the sockets down, kill the process
    group) if this context's flag is set while the block runs, and never after it. The
    block sees its wait end early and raises ``cancelled_error`` for the flag it gets
    (None: nothing can cancel this work, and no watcher runs)."""
    flag = cancel_flag()
    if flag is None:
        yield None
        return
    lock, done = threading.Lock(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            if flag.wait(_WATCH_SLICE):
                with lock:
                    if not done.is_set():
                        stop()
                return

    threading.Thread(target=watch, name="kiln-cancel-watch", daemon=True).start()
    try:
        yield flag
    finally:
        with lock:  # a stop under way ends first; none starts after this
            done.set()


__all__ = [
    "CancelFlag",
    "LinkedFlag",
    "cancel_flag",
    "cancel_scope",
    "cancelled_by",
    "cancelled_error",
    "raise_if_cancelled",
    "when_cancelled",
]
