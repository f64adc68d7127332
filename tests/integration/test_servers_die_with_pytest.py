"""The servers tests start die with a pytest that is killed mid-run (SIGKILL, a CI job's
timeout), which never runs their fixtures' teardown: a registry and a private dockerd are
gone within seconds, and what the dockerd left (its exec-root, the bind mount of its
data-root) is removed by the next dockerd's start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import private_dockerd
import registry_servers
from killed_process import kill_and_reap, wait_for_line

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

TESTS = Path(__file__).resolve().parents[1]

INNER = {
    "registry": """
        import os, time
        from registry_servers import start_registry

        def test_holds_a_registry(tmp_path):
            with start_registry("plain", str(tmp_path / "reg")) as reg:
                print("SERVER", reg.proc.pid, flush=True)
                time.sleep(240)
    """,
    "dockerd": """
        import os, time
        from private_dockerd import Dockerd

        def test_holds_a_dockerd(tmp_path):
            d = Dockerd(str(tmp_path / "dockerd"))
            os.makedirs(d.work)
            d.start()
            print("SERVER", d.pid, d.exec_root, os.path.join(d.work, "data"), flush=True)
            time.sleep(240)
    """,
}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")  # dead, not reaped yet
    except FileNotFoundError:
        return True


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def _run_then_kill_pytest(tmp_path, kind: str) -> list[str]:
    """Run the inner test in a pytest of its own, SIGKILL that pytest once its server is up;
    returns the words after SERVER (the server's PID first)."""
    (tmp_path / f"test_inner_{kind}.py").write_text(textwrap.dedent(INNER[kind]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider",
                             "-c", os.devnull, "--rootdir", str(tmp_path), "--basetemp",
                             str(tmp_path / "inner"), str(tmp_path / f"test_inner_{kind}.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        line = wait_for_line(proc, lambda text: "SERVER" in text)[-1]
    finally:
        kill_and_reap(proc)
    words = line.split("SERVER", 1)[1].split()
    pid = int(words[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the {kind} (PID {pid}) outlived the killed pytest")
    return words


@pytest.mark.skipif(not registry_servers.have_registry(), reason="docker-registry not installed")
def test_a_registry_dies_with_a_killed_pytest(tmp_path):
    _run_then_kill_pytest(tmp_path, "registry")


@pytest.mark.slow
@pytest.mark.skipif(not private_dockerd.Dockerd.available(), reason="dockerd not installed")
def test_a_dockerd_dies_with_a_killed_pytest_and_the_next_start_cleans_up(tmp_path):
    _, exec_root, data_root = _run_then_kill_pytest(tmp_path, "dockerd")
    assert os.path.isdir(exec_root)  # what the killed one left
    private_dockerd.sweep_dead_dockerds()  # what Dockerd.start does first
    assert not os.path.exists(exec_root)
    assert _mounts_under(data_root) == []
