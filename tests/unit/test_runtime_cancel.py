"""``kiln.runtime.cancel.wait_cancellable``: SIGTERM on cancel, SIGKILL after the grace."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from kiln.runtime.cancel import wait_cancellable


def _wait(argv: list[str], cancel_after: float | None, grace: float) -> tuple[int, float, list]:
    proc = subprocess.Popen(argv)
    sent: list[int] = []
    cancel = threading.Event()
    if cancel_after is not None:
        threading.Timer(cancel_after, cancel.set).start()

    def stop(signum: int) -> None:
        sent.append(signum)
        proc.send_signal(signum)

    start = time.monotonic()
    code = wait_cancellable(proc.poll, cancel, stop, grace)
    return code, time.monotonic() - start, sent


def test_no_cancel_waits_for_the_exit_code():
    code, _, sent = _wait(["sh", "-c", "exit 3"], None, 1.0)
    assert code == 3 and sent == []


def test_cancel_sends_sigterm():
    code, took, sent = _wait(["sleep", "30"], 0.2, 5.0)
    assert sent == [signal.SIGTERM] and code == -signal.SIGTERM and took < 10  # not sleep's 30


def test_sigkill_after_the_grace_when_sigterm_is_ignored():
    code, took, sent = _wait(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], 0.2, 0.5)
    assert sent == [signal.SIGTERM, signal.SIGKILL] and code == -signal.SIGKILL
    assert 0.6 < took < 10  # after the grace, and long before the loop would end by itself


def test_the_wait_ends_when_the_process_exits_not_at_the_next_poll(monkeypatch):
    # a RUN step must not be rounded up to the cancel poll's tick: with a pid the wait
    # wakes on the exit itself (a pidfd)
    monkeypatch.setattr("kiln.runtime.cancel.POLL_SECONDS", 20.0)
    proc = subprocess.Popen(["sh", "-c", "sleep 0.2"])
    start = time.monotonic()
    code = wait_cancellable(proc.poll, threading.Event(), proc.send_signal, 5.0, pid=proc.pid)
    assert code == 0 and time.monotonic() - start < 10


def test_cancel_still_stops_a_process_waited_for_by_pid(monkeypatch):
    monkeypatch.setattr("kiln.runtime.cancel.POLL_SECONDS", 0.05)
    proc = subprocess.Popen(["sleep", "30"])
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    sent: list[int] = []

    def stop(signum: int) -> None:
        sent.append(signum)
        proc.send_signal(signum)

    code = wait_cancellable(proc.poll, cancel, stop, 5.0, pid=proc.pid)
    assert sent == [signal.SIGTERM] and code == -signal.SIGTERM
