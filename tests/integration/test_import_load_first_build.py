"""A first build on a base that ``kiln import`` or ``kiln load`` brought in finds the base's
layers unpacked (as after a pull, or ``docker import``/``docker load``): the build runs on
the very directories the import or load made, over the real overlay driver and runc, and
unpacks nothing again; the layers verify against their blobs (``kiln system check``)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from fixtures_images import busybox_rootfs_tar  # noqa: F401

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]


def _kiln(root, tmp_path, *args: str) -> str:
    env = dict(os.environ, KILN_ROOT=str(root), KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("BUILDAH_ISOLATION", None)
    env.pop("KILN_SNAPSHOT_DRIVER", None)
    res = subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert res.returncode == 0, f"kiln {' '.join(args)}: {res.stderr}"
    return res.stdout


def _layers(root) -> dict[str, int]:
    """chain id -> inode of its unpacked directory."""
    snaps = root / "snapshots"
    conn = sqlite3.connect(str(snaps / "snapshots.db"))
    try:
        rows = conn.execute("SELECT chain_id, n FROM layers").fetchall()
    finally:
        conn.close()
    return {chain: os.stat(snaps / "layers" / str(n)).st_ino for chain, n in rows}


@pytest.mark.parametrize("via", ["import", "load"])
def test_first_build_runs_on_the_layers_the_import_or_load_unpacked(
    tmp_path,
    busybox_rootfs_tar,  # noqa: F811
    via,
):
    root = tmp_path / "root"
    if via == "import":
        _kiln(root, tmp_path, "import", "-q", busybox_rootfs_tar, "base:1")
    else:
        other = tmp_path / "other"
        _kiln(other, tmp_path, "import", "-q", busybox_rootfs_tar, "base:1")
        _kiln(other, tmp_path, "save", "-o", str(tmp_path / "base.tar"), "base:1")
        _kiln(root, tmp_path, "load", "-q", "-i", str(tmp_path / "base.tar"))
    unpacked = _layers(root)
    assert len(unpacked) == 1, "the base's layer is not unpacked"
    assert os.listdir(root / "snapshots" / "tmp") == []
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base:1\nRUN echo hello > /hello\n")
    _kiln(
        root, tmp_path, "build", "-q", "--runtime", "runc", "--pull=never", "-t", "app:1", str(ctx)
    )
    after = _layers(root)
    assert {c: after[c] for c in unpacked} == unpacked  # the same directories: not unpacked again
    assert len(after) == 2  # and the RUN step's layer
    out = _kiln(root, tmp_path, "system", "check")
    assert "no problems found" in out
