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
runs it so even when the signal lands while the hold is being taken. A descriptor a ``with``
body uses comes from ``opened``: one opened by ``fd = os.open(...)`` before a ``try`` that
closes it stays open when the signal lands just after the open returned (per file, where
a hold's ~9 µs is too dear: ``util.owned_open.open_into``).

``handlers_swapped`` puts other handlers in place for a block (a RUN's, while its container
runs) and back, with the signals blocked over each swap.

Only the main thread runs Python's signal handlers, so elsewhere this holds nothing (and
needs not: the signal is raised in the main thread, not in this one). A handler Python did
not install (``None``) is left alone.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C: ``signal`` builds enums (1 ms a command)
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

HELD: tuple[int, ...] = (_signal.SIGINT, _signal.SIGTERM)


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = HELD) -> Iterator[None]:
    """Run the block with ``signums`` recorded, not handled; once it ends, restore their
    handlers and deliver the first one recorded to its handler."""
    caught: list[tuple[int, Any]] = []
    try:
        with handlers_swapped(signums, lambda signum, _f, old: caught.append((signum, old))):
            yield
    finally:
        if caught:
            _deliver(*caught[0])


@contextlib.contextmanager
def handlers_swapped(
    signums: tuple[int, ...], handler: Callable[[int, Any, Any], object]
) -> Iterator[None]:
    """Run the block with ``handler(signum, frame, replaced_handler)`` for ``signums`` (in
    the main thread; elsewhere nothing changes). All are swapped in, and back, with the
    signals blocked in this thread: one sent to it (a Ctrl-C ``raise_signal``) waits in the
    kernel and reaches the handlers of the state after the swap, never a mix. One sent to
    the process may still be taken by another thread meanwhile, and its handler run in
    the middle of a swap: a handler it leaves installed then acts as the one it replaced,
    and puts that one back the first time it runs."""
    if threading.get_ident() != threading.main_thread().ident:  # no _DummyThread in a raw one
        yield
        return
    previous: dict[int, Any] = {}
    over = False

    def swapped(signum: int, frame: Any) -> None:
        if over:  # left by an interrupted restore
            _signal.signal(signum, previous[signum])
            _deliver(signum, previous[signum])
        else:
            handler(signum, frame, previous[signum])

    # the mask read first, unchanged, then blocked inside the ``try`` that puts it back; no
    # context manager: the call making one would be a point where a signal lands unblocked
    unblocked = _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
    try:
        try:
            _signal.pthread_sigmask(_signal.SIG_BLOCK, signums)
            for signum in signums:
                old = _signal.getsignal(signum)
                if old is not None:
                    previous[signum] = old
                    _signal.signal(signum, swapped)
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, unblocked)
        yield
    finally:
        over = True
        try:
            _signal.pthread_sigmask(_signal.SIG_BLOCK, signums)
            for signum, old in previous.items():
                _signal.signal(signum, old)
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, unblocked)


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


@contextlib.contextmanager
def opened(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> Iterator[int]:
    """``os.open(path, flags, mode, dir_fd=dir_fd)`` for the ``with`` body, closed after:
    held while it opens, so the descriptor is the ``finally``'s before a signal can land."""
    fd = -1
    try:
        with signals_held():
            fd = os.open(path, flags, mode, dir_fd=dir_fd)
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):  # Python's default_int_handler, kiln's raise_interrupted, ...
        handler(signum, None)
    elif handler == _signal.SIG_DFL:
        _signal.raise_signal(signum)  # what it would have done: end the process
    # SIG_IGN: ignored, as it would have been
