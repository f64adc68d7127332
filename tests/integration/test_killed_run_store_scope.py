"""The RUN containers a killed kiln left are stopped by the next command of *its* store only.

Every store on the machine shares the runtime directory (runc's ``--root`` and the
bundles): a command of another store must neither stop such a container nor report it;
the killed kiln's own store stops it and names it in its warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fixtures_images import make_busybox_rootfs
from killed_process import clean_up_after_kills, kill_when_started

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.timeout(600)]

WARNING = "removed what a killed kiln left behind"


@pytest.fixture
def stores(tmp_path):
    runtime = tmp_path / "runtime"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    environ = dict(os.environ, KILN_RUNTIME_DIR=str(runtime), TMPDIR=str(scratch))
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs.tar"))

    def kiln(store, *args, code=0):
        proc = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root",
                               str(tmp_path / store), *args], env=environ,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if code is not None:
            assert proc.returncode == code, proc.stderr
        return proc

    for store in ("a", "b"):
        kiln(store, "import", rootfs, "busybox")
    yield kiln, environ, tmp_path
    clean_up_after_kills(tmp_path, runtime / "runc")  # what a failed test left


def _containers(runtime) -> list[str]:
    if not (runtime / "runc").is_dir():
        return []
    res = subprocess.run(["runc", "--root", str(runtime / "runc"), "list", "-f", "json"],
                         capture_output=True, timeout=30, check=True)  # fmt: skip
    return sorted(c["id"] for c in json.loads(res.stdout or b"null") or [])


def _kill_a_build_mid_run(environ, root: str, ctx) -> None:
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo started; sleep 300\n")
    argv = [sys.executable, "-m", "kiln.cli.main", "--root", root, "build", "--progress",
            "plain", str(ctx)]  # fmt: skip
    kill_when_started(argv, lambda line: line.rstrip().endswith("started"), env=environ)


def test_a_killed_kilns_run_is_swept_by_its_own_store_only(stores):
    kiln, environ, tmp = stores
    runtime = tmp / "runtime"
    killed = tmp / "killed"
    killed.mkdir()
    _kill_a_build_mid_run(environ, str(tmp / "a"), killed)
    left = _containers(runtime)
    assert len(left) == 1, "the killed build's RUN container outlives it under runc"

    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN true\n")
    other = kiln("b", "build", "-q", str(ctx))  # another store's command, with a RUN too
    assert WARNING not in other.stderr, other.stderr
    assert _containers(runtime) == left  # not its container to stop

    own = kiln("a", "build", "-q", str(ctx))
    assert f"{WARNING}: 1 running RUN container(s)" in own.stderr, own.stderr
    assert _containers(runtime) == []
    assert os.listdir(runtime / "bundles") == []


def test_system_check_reports_its_own_stores_stray_run_only(stores):
    """A RUN container whose bundle is gone too (runc still runs it) is likewise the
    business of the store its root filesystem is in: ``kiln system check`` of another
    store neither reports nor kills it."""
    kiln, environ, tmp = stores
    runtime = tmp / "runtime"
    killed = tmp / "killed"
    killed.mkdir()
    _kill_a_build_mid_run(environ, str(tmp / "a"), killed)
    [left] = _containers(runtime)
    for name in os.listdir(runtime / "bundles"):
        shutil.rmtree(runtime / "bundles" / name)

    # (it may report the killed build's scratch directory: the temporary directory is shared)
    other = kiln("b", "system", "check", "--quick", "--format", "json", code=None)
    other = json.loads(other.stdout)
    assert [f for f in other["findings"] if f["kind"] == "run"] == []
    assert _containers(runtime) == [left]

    own = kiln("a", "system", "check", "--quick", "--repair", "--format", "json", code=None)
    assert [f["subject"] for f in json.loads(own.stdout)["findings"] if f["kind"] == "run"] == [
        left
    ]
    assert _containers(runtime) == []
