"""Hold Ctrl-C and SIGTERM over a few statements that must not stop halfway.

Python raises a ``KeyboardInterrupt`` (or kiln's ``Interrupted``, for SIGTERM) between any
two bytecodes of the main thread. Where a step has already committed a removal and only
the files remain to go (the GC's rows deleted, the directories still there), stopping
there leaves unreachable garbage behind; ``signals_held`` lets the step finish and then
delivers the signal as it would have been::

    with signals_held():
        commit_the_removal()
        delete_the_files()
    # a Ctrl-C that came meanwhile is raised here

A ``finally``'s clean-up (a release that must happen) goes through ``finish_held``, which
runs it so even when the signal lands while the hold is being taken.

Only the main thread runs Python's signal handlers, so elsewhere this holds nothing (and
needs not: the signal is raised in the main thread, not in this one). A handler Python did
not install (``None``) is left alone.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C: ``signal`` builds enums (1 ms a command)
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

HELD: tuple[int, ...] = (_signal.SIGINT, _signal.SIGTERM)


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = HELD) -> Iterator[None]:
    """Run the block with ``signums`` recorded, not handled; once it ends, restore their
    handlers and deliver the first one recorded to its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    over = False

    def hold(signum: int, _frame: object) -> None:
        if over:  # left installed by an interrupted restore: act as the handler it replaced
            _deliver(signum, previous[signum])
        else:
            caught.append(signum)

    try:
        for signum in signums:
            handler = _signal.getsignal(signum)
            if handler is not None:
                previous[signum] = handler
                _signal.signal(signum, hold)
        yield
    finally:
        # a signal landing between two restores raises there, leaving the rest on ``hold``
        # (which then forwards, ``over``); blocked meanwhile, it waits in the kernel and
        # reaches its own handler once all are back (unless another thread takes it)
        over = True
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, signums)
        try:
            for signum, handler in previous.items():
                _signal.signal(signum, handler)
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        if caught:
            _deliver(caught[0], previous[caught[0]])


def finish_held(cleanup: Callable[[], object]) -> None:
    """Run ``cleanup`` (idempotent: what a ``finally`` must release) to its end with the
    signals held, and the signal after. ``signals_held`` alone skips the clean-up when the
    signal lands while the hold is being taken; here that runs it once more, held."""
    try:
        with signals_held():
            cleanup()
    except KeyboardInterrupt:  # kiln's SIGTERM ``Interrupted`` too
        with signals_held():
            cleanup()
        raise


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):  # Python's default_int_handler, kiln's raise_interrupted, ...
        handler(signum, None)
    elif handler == _signal.SIG_DFL:
        _signal.raise_signal(signum)  # what it would have done: end the process
    # SIG_IGN: ignored, as it would have been
