"""``kiln import`` and ``kiln load`` SIGKILLed part-way (fed through a slow pipe on stdin,
killed after a given share of the input, or after all of it while they store and unpack
it): no partial image is left, the next command works, the next import or load clears
what the killed one left (its lease, its spooled input, the snapshotter's ``tmp/``), after
which ``kiln system check`` finds nothing and no temporary directory of kiln is left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from fixtures_images import make_busybox_rootfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay unpack)"),
]
KILN = shutil.which("kiln")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    if KILN is None:
        pytest.skip("the kiln console script is not installed")
    tmp = tmp_path_factory.mktemp("killed")
    env = dict(os.environ, KILN_ROOT=str(tmp / "root"), TMPDIR=str(tmp / "tmpdir"))
    (tmp / "tmpdir").mkdir()
    rootfs = make_busybox_rootfs(str(tmp / "rootfs.tar"))
    b = {"tmp": tmp, "env": env, "rootfs": rootfs, "archive": str(tmp / "bb.docker.tar")}
    kiln(b, "import", rootfs, "kept:1")
    kiln(b, "tag", "kept:1", "archived:1")
    kiln(b, "save", "--format", "docker-archive", "-o", b["archive"], "archived:1")
    kiln(b, "rmi", "archived:1")  # the name only: kept:1 keeps the image
    return b


def kiln(b: dict, *args: str, data: bytes | None = None) -> str:
    res = subprocess.run([KILN, *args], env=b["env"], input=data, capture_output=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, (args, res.stderr.decode(errors="replace"))
    return res.stdout.decode()


def images(b: dict) -> dict[str, str]:
    rows = json.loads(kiln(b, "images", "--format", "json") or "[]")
    return {n: r["Id"] for r in rows for n in r.get("Names") or []}


def kill_part_way(b: dict, argv: list[str], data: bytes, share: float, eof: bool) -> None:
    """Start ``kiln argv`` reading ``data`` from stdin; write ``share`` of it (the write
    returns once the command has read all but a pipe's worth), wait, SIGKILL it."""
    proc = subprocess.Popen([KILN, *argv], env=b["env"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write(data[: int(len(data) * share)])
        proc.stdin.flush()
        if eof:
            proc.stdin.close()
        time.sleep(0.4)  # it reads, stores and unpacks what it was given
        assert proc.poll() is None, "the command ended before it was killed: kill it sooner"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()


TRIALS = [
    ("import", 0.3, False),
    ("import", 0.95, False),
    ("import", 1.0, False),  # all of it, no end of input yet
    ("load", 0.3, False),
    ("load", 1.0, False),
]


@pytest.mark.parametrize(("op", "share", "eof"), TRIALS)
def test_a_killed_import_or_load_leaves_nothing(bench, op, share, eof):
    b = bench
    before = images(b)
    path, argv = (
        (b["rootfs"], ["import", "-", "killed:1"]) if op == "import" else (b["archive"], ["load"])
    )
    with open(path, "rb") as f:
        data = f.read()
    try:
        kill_part_way(b, argv, data, share, eof)
        assert images(b) == before  # the next command works; no partial image
        # the next import or load works and clears what the killed one left
        kiln(b, *argv, data=data)
        after = images(b)
        assert {n: i for n, i in after.items() if n in before} == before
        check = subprocess.run([KILN, "system", "check"], env=b["env"], capture_output=True,
                               text=True, timeout=120)  # fmt: skip
        assert check.returncode == 0 and "no problems found" in check.stdout, check.stdout
        root = b["env"]["KILN_ROOT"]
        assert os.listdir(os.path.join(root, "snapshots", "tmp")) == []
        assert os.listdir(os.path.join(root, "ingest")) == []
        assert os.listdir(b["env"]["TMPDIR"]) == []
    finally:
        for name in set(images(b)) - set(before):
            kiln(b, "rmi", name)
        subprocess.run(
            [KILN, "system", "check", "--repair"], env=b["env"], capture_output=True, timeout=120
        )  # fmt: skip  (the next trial starts clean)
