"""SIGINT and SIGTERM at random moments of build (FROM, RUN, COPY of many files and of one
big file, multi-stage, --jobs 2), pull, push, save, load, import, export, from, run, copy,
commit, system prune and rmi, and Ctrl-C at random moments of library calls (seeded, one
each): each stops as promised and leaves nothing, and works again
(``tests/interrupt_trials.py`` says what is checked; ``bench/interrupt_fuzz.py --trials N``
runs many more).

``KILN_INTERRUPT_SEED`` picks another seed (a failure names its operation, trial, signal
and delay).
"""

from __future__ import annotations

import os
import shutil

import pytest

import crash_trials
import interrupt_trials

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    # a soak, opt-in: its seeded delays land elsewhere on every machine, and it has found
    # two leaks not fixed yet (an active snapshot directory no record names after a Ctrl-C
    # in a build's big COPY; a staged removal left by a Ctrl-C in a library commit)
    pytest.mark.skipif(
        not os.environ.get("KILN_INTERRUPT_TRIALS"),
        reason="set KILN_INTERRUPT_TRIALS=1 to run the interrupt soak",
    ),  # fmt: skip
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    seed = int(os.environ.get("KILN_INTERRUPT_SEED", "5"))
    with crash_trials.bench_with_registry(
        str(tmp_path_factory.mktemp("interrupt")),
        lambda root, registry: interrupt_trials.Bench(root, registry, seed=seed),
        interrupt_trials.cleanup,
    ) as b:
        yield b


@pytest.mark.timeout(900)
def test_a_signal_anywhere_in_a_command_stops_it_and_leaves_nothing(bench):
    ops = interrupt_trials.operations(bench)
    bench.calibrate(ops)
    problems = []
    for n, op in enumerate(ops):
        problems += bench.trial(op, n)
    assert problems == [], "\n".join(problems)
    assert len(bench.log) == len(ops)


@pytest.mark.timeout(900)
def test_ctrl_c_anywhere_in_a_library_call_leaves_nothing_once_it_has_raised(bench):
    ops = interrupt_trials.library_operations(bench)
    bench.calibrate_library(ops)
    start = len(bench.log)
    problems = []
    for n, op in enumerate(ops):
        problems += bench.library_trial(op, 100 + n)
    assert problems == [], "\n".join(problems)
    assert len(bench.log) - start == len(ops)
