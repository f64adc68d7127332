"""SIGKILL at random points of build (RUN and COPY), pull, push, load, commit, prune and rmi
(seeded, a few per operation): the next kiln command works, nothing is left behind, the
store checks clean and every tagged image reads back (``tests/crash_trials.py`` says what is
checked; ``bench/crash_soak.py --trials N`` runs many more).

``KILN_CRASH_SEED`` picks another seed (a failure names its operation, trial and delay).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

import crash_trials

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

TRIALS_PER_OP = 2


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    seed = int(os.environ.get("KILN_CRASH_SEED", "14"))
    with crash_trials.bench_with_registry(
        str(tmp_path_factory.mktemp("crash")),
        lambda root, registry: crash_trials.Bench(root, registry, seed=seed),
        crash_trials.cleanup,
    ) as b:
        yield b


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_anywhere_leaves_a_working_store(bench):
    ops = crash_trials.operations(bench)
    bench.calibrate(ops)
    problems = []
    for n in range(TRIALS_PER_OP):
        for op in ops:
            problems += bench.trial(op, n)
    assert problems == [], "\n".join(problems)
    assert len(bench.log) == TRIALS_PER_OP * len(ops)


def test_a_build_killed_mid_run_leaves_no_temp_dir(bench):
    """A build's temporary files (RUN scripts, mount sources, COPY staging) live in its own
    directory under ``$TMPDIR`` named after its process; the next command removes a killed
    one's (before, every killed build left ``kiln-run-*``/``kiln-script-*`` dirs forever)."""
    with open(os.path.join(bench.ctx, "Containerfile.run"), "w") as f:
        f.write(f"FROM busybox\nRUN <<EOF\necho started {bench.marker}\nsleep 300\nEOF\n")
    argv = bench.argv("build", "--runtime", "runc", "-f",
                      os.path.join(bench.ctx, "Containerfile.run"), bench.ctx)  # fmt: skip
    proc = subprocess.Popen(argv, env=bench.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if line.startswith("started"):
                break
        else:
            pytest.fail("the RUN never started")
        assert os.listdir(bench.tmpdir) != []  # the build's own directory, in use
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    bench.kiln("image", "prune", "-f")  # a command that sweeps leftovers (as build, run do)
    assert crash_trials.leftovers(bench) == []
    assert os.listdir(bench.tmpdir) == []
    assert crash_trials.store_problems(bench) == []


def test_a_live_commands_temp_dir_is_left_alone(bench):
    """Only a dead owner's directory goes: another kiln's, mid-build, stays."""
    with open(os.path.join(bench.ctx, "Containerfile.run"), "w") as f:
        f.write(f"FROM busybox\nRUN <<EOF\necho started {bench.marker}\nsleep 300\nEOF\n")
    argv = bench.argv("build", "--runtime", "runc", "-f",
                      os.path.join(bench.ctx, "Containerfile.run"), bench.ctx)  # fmt: skip
    proc = subprocess.Popen(argv, env=bench.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if line.startswith("started"):
                break
        live = sorted(os.listdir(bench.tmpdir))
        bench.kiln("images")
        assert sorted(os.listdir(bench.tmpdir)) == live and live
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    assert os.listdir(bench.tmpdir) == []  # its own close() removed it
