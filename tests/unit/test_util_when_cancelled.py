"""kiln.util.cancel.when_cancelled: a wait that cannot look at the cancel flag (urllib's
socket read, a child process) is ended by a watcher that calls ``stop`` once the flag is
set while the block runs."""

from __future__ import annotations

import threading

from kiln.util.cancel import CancelFlag, LinkedFlag, cancelled_by, when_cancelled


def test_without_a_flag_nothing_watches():
    calls: list[str] = []
    with when_cancelled(lambda: calls.append("stop")) as flag:
        assert flag is None
    assert calls == []


def test_a_flag_set_during_the_block_calls_stop_once():
    flag, stopped = CancelFlag(), threading.Event()
    calls: list[str] = []

    def stop() -> None:
        calls.append("stop")
        stopped.set()

    with cancelled_by(flag), when_cancelled(stop) as seen:
        assert seen is flag
        flag.set_for("the server is stopping")
        assert stopped.wait(30)
    assert calls == ["stop"]


def test_an_enclosing_flag_set_before_the_block_stops_it_at_once():
    outer = CancelFlag()
    outer.set()
    stopped = threading.Event()
    with cancelled_by(LinkedFlag(outer)), when_cancelled(stopped.set):
        assert stopped.wait(30)
