"""``signals_held``: a Ctrl-C or SIGTERM during the block reaches its handler once the block
has ended, not in the middle of it; without one, the block runs as usual."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading

import pytest

from kiln.errors import Interrupted, raise_interrupted
from kiln.util.held_signals import signals_held


def test_a_ctrl_c_in_the_block_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        signal.raise_signal(signal.SIGINT)
        done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_reaches_kilns_handler_after_the_block():
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        with pytest.raises(Interrupted) as stopped, signals_held():
            signal.raise_signal(signal.SIGTERM)
        assert stopped.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is raise_interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored_and_a_quiet_block_raises_nothing():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_held():
            signal.raise_signal(signal.SIGINT)
        with signals_held():
            pass
    finally:
        signal.signal(signal.SIGINT, previous)


def test_another_thread_holds_nothing_and_changes_no_handler():
    seen = []

    def work():
        with signals_held():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=work)
    t.start()
    t.join(30)
    assert seen == [signal.default_int_handler]


def test_a_ctrl_c_at_any_point_of_the_hold_leaves_every_handler_as_it_was():
    """Restoring the handlers one by one, a Ctrl-C that landed after SIGINT's was back raised
    there and left SIGTERM's handler the hold's for good: every later SIGTERM swallowed."""
    from ctrl_c_anywhere import every_point
    from kiln.util import held_signals

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        trials = []

        def quiet_block() -> None:
            with held_signals.signals_held():
                pass

        for n, _interrupted in every_point(quiet_block, within=(held_signals.__file__,)):
            trials.append(n)
            handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
            assert handlers == (signal.default_int_handler, raise_interrupted), n
        assert len(trials) > 4
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_ctrl_c_at_any_point_of_a_file_lock_leaves_no_descriptor_and_no_lock(tmp_path):
    """``file_lock`` opened its file before the ``try`` that closes it: a Ctrl-C just after
    the open returned left the descriptor open, and the lock with it once taken."""
    from ctrl_c_anywhere import every_point, open_fds
    from kiln.util import held_signals, locks
    from kiln.util.locks import file_lock, try_lock

    path = str(tmp_path / "x.lock")

    def lock() -> None:
        with file_lock(path):
            pass

    lock()
    before = open_fds()
    trials = []
    for n, _interrupted in every_point(lock, within=(held_signals.__file__, locks.__file__)):
        trials.append(n)
        assert open_fds().keys() == before.keys(), n
        fd = os.open(path, os.O_RDWR)
        try:
            assert try_lock(fd), f"point {n}: the lock is still held"
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    assert len(trials) > 4


def test_a_handler_an_interrupted_restore_left_acts_as_and_gives_way_to_the_one_it_replaced():
    """A Ctrl-C sent to the process while another thread lives may be taken by that thread
    while the main thread restores the handlers (blocking them in the main thread does not
    stop that), and its handler raises between two restores. What is left then must act as
    the handler it replaced and put it back: a SIGHUP left at SIG_DFL that way went to the
    leftover and back to itself until a RecursionError, instead of ending the process."""
    from kiln.util import held_signals

    idle = threading.Event()
    other = threading.Thread(target=idle.wait, daemon=True)  # as a RUN's output reader
    other.start()
    seen = []

    def term(signum: int, _frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, term)
    restore_line = "_signal.signal(signum, old)"
    restores = 0

    def trace(frame, event, arg):
        nonlocal restores
        if event == "call":
            return trace if frame.f_code.co_filename == held_signals.__file__ else None
        if event == "line" and restore_line in _line(frame):
            restores += 1
            if restores == 2:  # SIGINT's back, SIGTERM's not yet
                os.kill(os.getpid(), signal.SIGINT)  # to the process: any thread may take it
                idle.wait(0.05)
        return trace

    try:
        sys.settrace(trace)
        with (
            pytest.raises(KeyboardInterrupt),
            held_signals.handlers_swapped((signal.SIGINT, signal.SIGTERM), lambda s, f, old: None),
        ):
            pass
        sys.settrace(None)
        assert restores == 2, "the restore was not interrupted where the test aims"
        assert signal.getsignal(signal.SIGTERM) is not term  # left by the interrupted restore
        signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM]  # acted as the one it replaced
        assert signal.getsignal(signal.SIGTERM) is term  # and put it back
    finally:
        sys.settrace(None)
        idle.set()
        signal.signal(signal.SIGTERM, previous)


def _line(frame) -> str:
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)
