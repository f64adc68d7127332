"""A kiln killed mid-RUN leaves nothing behind once the next build (or run, prune, check) starts: the RUN's
process no longer runs, no mount, no bundle, no working container of the build.

A user's own working containers (``kiln from``) are never touched, and neither is another
kiln's RUN that is still running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from fixtures_images import make_busybox_rootfs
from killed_process import clean_up_after_kills, kill_and_reap, kill_when_started, started
from kiln_cli import kiln_runner
from mount_points import mount_points_under

pytestmark = [pytest.mark.root]


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "root"
    environ = dict(os.environ, KILN_ROOT=str(root), KILN_RUNTIME_DIR=str(tmp_path / "runtime"))
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs.tar"))
    kiln = kiln_runner(environ, timeout=300)
    kiln("import", rootfs, "busybox")
    yield kiln, environ, tmp_path
    clean_up_after_kills(tmp_path, tmp_path / "runtime" / "runc")  # what a failed test left


def _running(token: str) -> bool:
    return subprocess.run(["pgrep", "-f", token], capture_output=True, timeout=30).returncode == 0


def _start_and_kill(environ, ctx, token: str) -> None:
    ctx.mkdir()
    (ctx / "made.txt").write_text("a layer the build's lease holds when it is killed\n")
    (ctx / "Containerfile").write_text(
        f"FROM busybox\nCOPY made.txt /\nRUN echo started; sleep 300; echo {token}\n"
    )
    kill_when_started([sys.executable, "-m", "kiln.cli.main", "build", str(ctx)], "started",
                      env=environ)  # fmt: skip


def _leases(root) -> int:
    conn = sqlite3.connect(str(root / "kiln.db"))
    try:
        return conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
    finally:
        conn.close()


def test_the_next_command_clears_what_a_killed_build_left(env):
    kiln, environ, tmp = env
    mine = kiln("from", "--name", "users-own", "busybox").stdout.strip()
    token = "kiln-leftover-" + secrets.token_hex(6)
    _start_and_kill(environ, tmp / "ctx", token)
    time.sleep(0.5)
    assert _running(token)  # runc run outlived its parent: what the sweep is for
    assert _leases(tmp / "root") >= 1  # the killed build's lease, still held
    res = kiln("images")  # a command that only reads the store does not sweep
    assert "removed" not in res.stderr and _running(token)
    nxt = tmp / "next"
    nxt.mkdir()
    (nxt / "Containerfile").write_text("FROM busybox\nRUN true\n")
    res = kiln("build", "-q", str(nxt))  # the next build does
    assert "removed what a killed kiln left behind" in res.stderr
    deadline = time.monotonic() + 20
    while _running(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(token)
    assert os.listdir(tmp / "runtime" / "bundles") == []
    assert mount_points_under(tmp / "root") == []
    names = [c["containername"] for c in json.loads(kiln("containers", "--json").stdout)]
    assert names == [mine]  # the user's own container stays; the build's is gone
    assert _leases(tmp / "root") == 0  # it no longer keeps images from prune
    assert "removed" not in kiln("build", "-q", str(nxt)).stderr  # nothing more to clear


def test_a_live_builds_run_is_left_alone(env):
    kiln, environ, tmp = env
    ctx = tmp / "ctx"
    ctx.mkdir()
    token = "kiln-leftover-" + secrets.token_hex(6)
    (ctx / "Containerfile").write_text(f"FROM busybox\nRUN echo started; sleep 300; echo {token}\n")
    argv = [sys.executable, "-m", "kiln.cli.main", "build", str(ctx)]
    with started(argv, "started", env=environ) as proc:
        other = tmp / "other"
        other.mkdir()
        (other / "Containerfile").write_text("FROM busybox\nRUN true\n")
        res = kiln("build", "-q", str(other))  # sweeps: only what dead processes left
        assert "removed" not in res.stderr
        assert _running(token) and proc.poll() is None
        assert len(os.listdir(tmp / "runtime" / "bundles")) == 1
        kill_and_reap(proc, signal.SIGINT, grace=60)
