"""``kiln system check``: each kind of damage done to a store on purpose is reported (exit
125), ``--repair`` fixes it and says what it did, a second check is clean, and the tagged
images nobody damaged still read back (save) bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

from fixtures_images import make_busybox_rootfs
from kiln_cli import kiln_runner

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


@pytest.fixture
def env(tmp_path):
    root, scratch, runtime = tmp_path / "root", tmp_path / "scratch", tmp_path / "runtime"
    scratch.mkdir()
    environ = dict(os.environ, KILN_ROOT=str(root), KILN_RUNTIME_DIR=str(runtime),
                   TMPDIR=str(scratch))  # fmt: skip

    kiln = kiln_runner(environ, timeout=300)
    kiln("import", make_busybox_rootfs(str(tmp_path / "rootfs.tar")), "busybox")
    yield kiln, environ, tmp_path
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    for line in reversed(lines):
        point = line.split()[4]
        if point.startswith(str(tmp_path)):
            subprocess.run(["umount", "-l", point], check=False, timeout=30)


def _build(kiln, tmp_path, name: str, text: str) -> None:
    ctx = tmp_path / f"ctx-{name}"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(text)
    kiln("build", "-q", "-t", name, str(ctx))


def _save(kiln, tmp_path, name: str) -> str:
    out = tmp_path / f"{name}-{time.monotonic_ns()}.tar"
    kiln("save", "-o", str(out), name)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def _check(kiln, *flags, code):
    res = kiln("system", "check", "--format", "json", *flags, check=False)
    assert res.returncode == code, res.stdout + res.stderr
    return json.loads(res.stdout)


def _kinds(report) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in report["findings"]:
        out.setdefault(f["kind"], []).append(f)
    return out


def _dead_owner() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=30)
    return f"{proc.pid}:1"  # a PID that exited, and a start time no process has


def _layer_blob(root, image: str) -> str:
    conn = sqlite3.connect(str(root / "kiln.db"))
    try:
        rows = conn.execute(
            "SELECT COALESCE(il.blob_digest, l.blob_digest) FROM image_layers il "
            "JOIN layers l ON l.chain_id = il.chain_id "
            "JOIN names n ON n.image_id = il.image_id WHERE n.name LIKE ? "
            "ORDER BY il.position DESC",
            (f"%/{image}:latest",),
        ).fetchall()
    finally:
        conn.close()
    return rows[0][0]


def test_each_kind_of_damage_is_reported_then_repaired(env):
    kiln, environ, tmp = env
    root = tmp / "root"
    _build(kiln, tmp, "keeper", "FROM busybox\nRUN mkdir /data && echo kept > /data/a\n")
    _build(kiln, tmp, "victim", "FROM busybox\nRUN echo victim > /victim\n")
    before = {name: _save(kiln, tmp, name) for name in ("busybox", "keeper")}
    assert _check(kiln, code=0)["clean"]

    # 1. a byte of the victim's layer blob flipped
    blob = root / "blobs" / "sha256" / _layer_blob(root, "victim").split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    # 2. a file deleted from keeper's unpacked RUN layer
    victims = [p for p in (root / "snapshots" / "layers").glob("*/fs/data/a")]
    assert len(victims) == 1
    victims[0].unlink()
    # 3. a bundle of a dead kiln
    bundle = tmp / "runtime" / "bundles" / ("kiln-" + "ab" * 16 + "-x1")
    bundle.mkdir(parents=True)
    (bundle / "owner").write_text(_dead_owner())
    # 4. a dead kiln's scratch dir with something still mounted in it
    pid, _, start = _dead_owner().partition(":")
    scratch = tmp / "scratch" / f"kiln-scratch-{pid}.{start}-abc123"
    (scratch / "kiln-mnt-x").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(scratch / "kiln-mnt-x")], check=True,
                   timeout=30)  # fmt: skip
    # 5. a lease of a dead process
    conn = sqlite3.connect(str(root / "kiln.db"))
    with conn:
        conn.execute("INSERT INTO leases(id, created, expires) VALUES ('deadbeef', ?, ?)",
                     (time.time(), time.time() + 3600))  # fmt: skip
        conn.execute("INSERT INTO lease_owners(lease_id, owner) VALUES ('deadbeef', ?)",
                     (_dead_owner(),))  # fmt: skip
    conn.close()
    # 6. an active snapshot a killed `kiln from` prepared but never recorded a container for
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from kiln.snapshot import Snapshotter
        Snapshotter({str(root / "snapshots")!r}).prepare("kiln-container-orphan", None)
        os.kill(os.getpid(), signal.SIGKILL)
    """)], env=environ, timeout=60, check=False)  # fmt: skip
    # 7. an ingest nobody writes, and an unrecorded snapshot directory
    ingest = root / "ingest" / "anon-1"
    ingest.mkdir(parents=True)
    (ingest / "data").write_bytes(b"x" * 100)
    old = time.time() - 3600
    os.utime(ingest / "data", (old, old))
    (root / "snapshots" / "layers" / "999" / "fs").mkdir(parents=True)

    report = _check(kiln, code=125)
    kinds = _kinds(report)
    assert not report["clean"] and report["Errors"]
    assert any("corrupt" in f["problem"] for f in kinds["blob"])
    assert [f["subject"] for f in kinds["image"]]  # the victim image, damaged
    assert any("/data/a: missing" in f["problem"] for f in kinds["layer"])
    assert [f["subject"] for f in kinds["run"]] == ["kiln-" + "ab" * 16]
    assert [f["subject"] for f in kinds["scratch"]] == [str(scratch)]
    assert str(scratch / "kiln-mnt-x") in [f["subject"] for f in kinds["mount"]]
    assert [f["subject"] for f in kinds["lease"]] == ["deadbeef"]
    assert len(kinds["snapshot"]) == 1
    assert str(root / "snapshots" / "layers" / "999") in [f["subject"] for f in kinds["directory"]]
    assert len(kinds["ingest"]) == 1
    assert all(f["action"] == "" for f in report["findings"])  # nothing touched yet
    assert bundle.exists() and scratch.exists() and blob.exists()

    repaired = _check(kiln, "--repair", code=0)
    assert repaired["clean"]
    for f in repaired["findings"]:
        assert f["action"].startswith(("removed", "unmounted")), f
    assert repaired["bytes_freed"] > 0
    assert not bundle.exists() and not scratch.exists() and not blob.exists()
    assert not ingest.exists()

    again = _check(kiln, code=0)
    assert again["clean"] and again["findings"] == []
    assert kiln("image", "exists", "victim", check=False).returncode == 1  # removed: pull again
    after = {name: _save(kiln, tmp, name) for name in ("busybox", "keeper")}
    assert after == before
    # the damaged layer was dropped; its next use unpacks it again, intact
    kiln("from", "--name", "again", "keeper")
    assert _check(kiln, code=0)["checked"]["layers_verified"] >= 2


def test_text_report_and_exit_status(env):
    kiln, _, tmp = env
    res = kiln("system", "check")
    assert "no problems found" in res.stdout
    conn = sqlite3.connect(str(tmp / "root" / "kiln.db"))
    with conn:
        conn.execute("INSERT INTO leases(id, created, expires) VALUES ('old', 1, 2)")
    conn.close()
    res = kiln("system", "check", check=False)
    assert res.returncode == 125, res.stdout + res.stderr
    assert "lease old: a lease nothing will release: it has expired" in res.stdout
    assert "1 problem(s) left" in res.stdout
    listed = json.loads(kiln("system", "leases", "--format", "json").stdout)
    assert [(x["id"], x["stale"]) for x in listed] == [("old", True)]
    res = kiln("system", "check", "--repair")
    assert "-> removed" in res.stdout and "removed: 1 lease" in res.stdout
    assert json.loads(kiln("system", "leases", "--format", "json").stdout) == []


def test_quick_sees_sizes_but_not_digests(env):
    kiln, _, tmp = env
    root = tmp / "root"
    blob = root / "blobs" / "sha256" / _layer_blob(root, "busybox").split(":")[1]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))
    quick = _check(kiln, "--quick", code=0)  # same size: only the digest tells
    assert quick["snapshot_check"].startswith("skipped")
    assert _kinds(_check(kiln, code=125))["blob"]
    blob.write_bytes(bytes(data[:-10]))
    assert (
        "bytes, its descriptors say"
        in _kinds(_check(kiln, "--quick", code=125))["blob"][0]["problem"]
    )


def test_a_manifest_list_missing_a_child(env):
    kiln, _, tmp = env
    _build(kiln, tmp, "child", "FROM busybox\nRUN echo child > /c\n")
    kiln("manifest", "create", "mylist", "child")
    assert _check(kiln, code=0)["checked"]["manifest_lists"] == 1
    root = tmp / "root"
    conn = sqlite3.connect(str(root / "kiln.db"))
    manifest = conn.execute(
        "SELECT i.manifest_digest FROM images i JOIN names n ON n.image_id = i.id "
        "WHERE n.name LIKE '%/child:latest'"
    ).fetchone()[0]
    conn.close()
    (root / "blobs" / "sha256" / manifest.split(":")[1]).unlink()
    kinds = _kinds(_check(kiln, code=125))
    assert any(manifest in f["problem"] for f in kinds["manifest-list"])
    assert kinds["image"]
    assert _check(kiln, "--repair", code=0)["clean"]
    assert _check(kiln, code=0)["findings"] == []
    assert kiln("manifest", "exists", "mylist", check=False).returncode == 1  # 1: not there


def test_a_runc_container_whose_bundle_is_gone_is_killed(env):
    kiln, _, tmp = env
    bundle = tmp / "elsewhere"
    (bundle / "rootfs").mkdir(parents=True)
    with tarfile.open(tmp / "rootfs.tar") as tar:
        tar.extractall(bundle / "rootfs", filter="tar")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, timeout=30)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/sleep", "300"]
    (bundle / "config.json").write_text(json.dumps(spec))
    run_id = "kiln-" + os.urandom(16).hex()
    state = tmp / "runtime" / "runc"
    state.mkdir(parents=True)
    subprocess.run(["runc", "--root", str(state), "run", "-d", "--bundle", str(bundle), run_id],
                   check=True, timeout=60, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        kinds = _kinds(_check(kiln, code=125))
        assert [f["subject"] for f in kinds["run"]] == [run_id]
        assert _check(kiln, "--repair", code=0)["clean"]
        listed = subprocess.run(["runc", "--root", str(state), "list", "-q"], capture_output=True,
                                text=True, timeout=30, check=True).stdout.split()  # fmt: skip
        assert run_id not in listed
        assert _check(kiln, code=0)["findings"] == []
    finally:
        for args in (["kill", run_id, "KILL"], ["delete", "--force", run_id]):
            subprocess.run(["runc", "--root", str(state), *args], check=False, timeout=30,
                           capture_output=True)  # fmt: skip
