"""What a SIGKILLed kiln leaves is removed by the next command that builds, runs, prunes or
checks, and only by those (a command that only reads the store does not pay for the sweep):
a remote main context and a URL named context unpacked in the scratch space, and an active
snapshot a killed ``kiln from`` prepared but never recorded a container for. A live
process's snapshot is never taken for an orphan.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap

import pytest

from file_server import serving
from fixtures_images import make_busybox_rootfs
from killed_process import clean_up_after_kills, kill_when_started
from kiln_cli import kiln_runner
from mount_points import mount_points_under

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


@pytest.fixture
def env(tmp_path):
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    scratch.mkdir()
    environ = dict(os.environ, KILN_ROOT=str(root), KILN_RUNTIME_DIR=str(tmp_path / "runtime"),
                   TMPDIR=str(scratch))  # fmt: skip

    kiln = kiln_runner(environ, timeout=300)
    kiln("import", make_busybox_rootfs(str(tmp_path / "rootfs.tar")), "busybox")
    yield kiln, environ, tmp_path
    clean_up_after_kills(tmp_path, tmp_path / "runtime" / "runc")  # what a failed test left


@pytest.fixture
def served(tmp_path):
    """An http server of tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    with serving(www) as url:
        yield www, url


def _tar(path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _kill_when_started(environ, args) -> None:
    kill_when_started([sys.executable, "-m", "kiln.cli.main", *args], "started", env=environ)


def _scratch(tmp) -> list[str]:
    return sorted(n for n in os.listdir(tmp / "scratch") if n.startswith("kiln-"))


def test_remote_and_named_url_contexts_of_a_killed_build_are_swept(env, served):
    kiln, environ, tmp = env
    www, url = served
    token = "kiln-swept-" + os.urandom(4).hex()
    _tar(www / "main.tar", {"Containerfile": "FROM busybox\nCOPY --from=extra f /f\n"
                            f"RUN echo started; sleep 300; echo {token}\n"})  # fmt: skip
    _tar(www / "extra.tar", {"f": "named context file\n"})
    _kill_when_started(environ, ["build", "--build-context", f"extra={url}/extra.tar",
                                 f"{url}/main.tar"])  # fmt: skip
    left = _scratch(tmp)
    assert left, "the killed build left its unpacked contexts in the scratch space"
    assert kiln("images").returncode == 0
    assert _scratch(tmp) == left  # a command that only reads does not sweep
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN true\n")
    res = kiln("build", "-q", str(ctx))
    assert "removed what a killed kiln left behind" in res.stderr
    assert _scratch(tmp) == []
    assert mount_points_under(tmp) == []
    assert os.listdir(tmp / "runtime" / "bundles") == []


def _orphan_script(root, key: str, then: str) -> str:
    return textwrap.dedent(f"""
        import os, signal, sys, time
        from kiln.snapshot import Snapshotter
        Snapshotter({str(root / "snapshots")!r}).prepare({key!r}, None)
        print("prepared", flush=True)
        {then}
    """)


def _active_keys(root) -> list[str]:
    conn = sqlite3.connect(str(root / "snapshots" / "snapshots.db"))
    try:
        return sorted(r[0] for r in conn.execute("SELECT key FROM active"))
    finally:
        conn.close()


def test_an_orphan_snapshot_goes_and_a_live_ones_stays(env):
    kiln, environ, tmp = env
    root = tmp / "root"
    # a `kiln from` killed between snapshots.prepare and its container row
    subprocess.run([sys.executable, "-c", _orphan_script(
        root, "kiln-container-killed", "os.kill(os.getpid(), signal.SIGKILL)")],
        env=environ, timeout=60, check=False)  # fmt: skip
    # a live process between the same two steps: holds its snapshot
    live = subprocess.Popen([sys.executable, "-c", _orphan_script(
        root, "kiln-container-live", "time.sleep(120)")], env=environ,
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert live.stdout.readline().strip() == "prepared"
        assert _active_keys(root) == ["kiln-container-killed", "kiln-container-live"]
        kiln("images")
        assert len(_active_keys(root)) == 2  # not swept by a read-only command
        kiln("from", "--name", "mine", "busybox")  # a command that builds sweeps
        keys = _active_keys(root)
        assert "kiln-container-killed" not in keys
        assert "kiln-container-live" in keys
    finally:
        live.kill()
        live.wait(timeout=30)
    kiln("system", "check", "--repair")
    assert [k for k in _active_keys(root) if k.endswith(("-live", "-killed"))] == []
    kiln("system", "check")  # clean: the user's container keeps its own snapshot


@pytest.mark.slow
def test_builds_killed_at_random_points_leave_a_store_check_can_make_clean(env):
    """SIGKILL a build at random moments (a few in CI; ``bench/`` soaks longer): afterwards
    ``kiln system check --repair`` leaves a clean store and every tagged image saves bit for
    bit as before."""
    import hashlib
    import json
    import random

    kiln, environ, tmp = env
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    ctx = tmp / "keep"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo kept > /kept\n")
    kiln("build", "-q", "-t", "keeper", str(ctx))

    def saved(name: str) -> str:
        out = tmp / f"{name}.tar"
        kiln("save", "-o", str(out), name)
        return hashlib.sha256(out.read_bytes()).hexdigest()

    before = {n: saved(n) for n in ("busybox", "keeper")}
    work = tmp / "work"
    work.mkdir()
    (work / "big").write_bytes(os.urandom(4 << 20))
    for trial in range(3):
        (work / "Containerfile").write_text(
            f"FROM busybox\nCOPY big /big\nRUN echo {trial} > /t && cat /big > /big2\n"
            "RUN sleep 1; rm /big2\nCOPY Containerfile /cf\n"
        )
        proc = subprocess.Popen([sys.executable, "-m", "kiln.cli.main", "build", "-t",
                                 f"killed{trial}", str(work)], env=environ,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        delay = rng.uniform(0.3, 4.0)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        res = kiln("system", "check", "--repair", "--format", "json", check=False)
        assert res.returncode == 0, f"seed {seed} trial {trial} delay {delay:.2f}: {res.stdout}"
        again = json.loads(kiln("system", "check", "--format", "json").stdout)
        assert again["findings"] == [], f"seed {seed} trial {trial}: {again['findings']}"
        assert {n: saved(n) for n in before} == before, f"seed {seed} trial {trial}"


def test_a_view_mounted_by_a_killed_kiln_is_unmounted_and_removed(env):
    kiln, environ, tmp = env
    root = tmp / "root"
    kiln("from", "--name", "unpacks", "busybox")
    kiln("rm", "unpacks")
    script = textwrap.dedent(f"""
        import os, signal
        from kiln.snapshot import Snapshotter
        from kiln.snapshot.mount import mounted
        snaps = Snapshotter({str(root / "snapshots")!r})
        spec = snaps.view("kiln-from-killed", snaps.list_layers()[0])
        with mounted(spec) as path:  # no parent_dir: the process's own scratch dir
            print(path, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    res = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    view = res.stdout.strip()
    assert view.startswith(str(tmp / "scratch")) and view in mount_points_under(tmp)
    kiln("images")
    assert view in mount_points_under(tmp)  # a read-only command leaves it
    kiln("from", "--name", "next", "busybox")
    assert mount_points_under(tmp) == []
    assert not os.path.exists(os.path.dirname(view))
    assert "kiln-from-killed" not in _active_keys(root)


def test_a_dead_commands_scratch_dir_goes_without_a_word(env):
    """The scratch space is the shared temporary directory: a dead kiln's directory there
    (perhaps another store's) is removed quietly, not reported by an unrelated command."""
    kiln, _, tmp = env
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=30)
    left = tmp / "scratch" / f"kiln-scratch-{dead.pid}.1-abc123"
    (left / "ctx").mkdir(parents=True)
    (left / "ctx" / "f").write_text("left by a killed command\n")
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN true\n")
    res = kiln("build", "-q", str(ctx))
    assert "left behind" not in res.stderr, res.stderr
    assert _scratch(tmp) == []
