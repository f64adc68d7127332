"""The handlers a RUN puts in place while its container runs (``runc.signal_handlers``): a build's
RUN hands kiln's signals to the handlers it replaced (the command line's, which note the
signal for the exit code), a working container's run forwards them to the container, and
whichever it is, every handler is back as it was after the run, wherever a Ctrl-C lands."""

from __future__ import annotations

import signal

import pytest

from kiln.errors import Interrupted, raise_interrupted
from kiln.runtime import runc
from kiln.util import held_signals

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@pytest.fixture
def handlers():
    """kiln's command-line handlers for SIGINT and SIGTERM (SIGHUP ignored, as under
    ``nohup``); put back after the test."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    for s, h in before.items():
        signal.signal(s, h)


def _handlers(stops_kiln: bool):
    """A run's handlers, forwarding (when they do) to a ``runc kill`` that does nothing."""
    return runc.signal_handlers(runc._Forwarder(["true"], "run"), stops_kiln=stops_kiln)


def _now() -> tuple:
    return tuple(signal.getsignal(s) for s in SIGNALS)


def test_a_signal_during_a_build_run_goes_to_the_handler_it_replaced(handlers):
    noted = []

    def commands(signum: int, frame: object) -> None:  # as kiln.cli.main's note the signal
        noted.append(signum)
        raise_interrupted(signum, frame)

    signal.signal(signal.SIGTERM, commands)
    with pytest.raises(Interrupted), _handlers(stops_kiln=True):
        signal.raise_signal(signal.SIGTERM)
    assert noted == [signal.SIGTERM]


def test_an_ignored_hang_up_stays_ignored_during_a_build_run(handlers):
    with _handlers(stops_kiln=True):
        signal.raise_signal(signal.SIGHUP)


@pytest.mark.parametrize("stop_kiln", [True, False], ids=["build-run", "container-run"])
def test_a_ctrl_c_at_any_point_of_a_run_leaves_every_handler_as_it_was(handlers, stop_kiln):
    """Swapped one by one, a Ctrl-C landing between two left the rest as the run's for good:
    a working container's forwarding handlers then swallowed every later Ctrl-C."""
    from ctrl_c_anywhere import every_point

    before = _now()

    def run() -> None:
        with _handlers(stop_kiln):
            pass

    points = 0
    for n, _interrupted in every_point(run, within=(runc.__file__, held_signals.__file__)):
        points += 1
        assert _now() == before, n
    assert points > 8
