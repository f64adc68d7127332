"""``kiln mount``/``kiln umount`` with the copy snapshot driver: the rootfs is a bind mount of
the same filesystem, which ``os.path.ismount`` cannot see; it used to stay mounted for ever."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fixtures_images import busybox_rootfs_tar  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split(" ")[4] == path for line in f)


def test_umount_and_rm_release_a_copy_driver_bind_mount(tmp_path, busybox_rootfs_tar):  # noqa: F811
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "root"), KILN_SNAPSHOT_DRIVER="copy",
               KILN_RUNTIME_DIR=str(tmp_path / "run"), TMPDIR=str(tmp_path))  # fmt: skip

    def kiln(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    kiln("import", busybox_rootfs_tar, "bb")
    cid = kiln("from", "bb")
    path = os.path.realpath(kiln("mount", cid))
    assert _mounted(path)
    kiln("run", cid, "--", "touch", "/made")  # runs on the held mount, mounts nothing more
    assert sum(1 for _ in _mountinfo_lines(path)) == 1
    kiln("umount", cid)
    assert not _mounted(path)
    assert "made" in kiln("run", cid, "--", "ls", "/")
    assert not _mounted(path)
    kiln("mount", cid)
    kiln("rm", cid)
    assert not _mounted(path)


def _mountinfo_lines(path: str):
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        yield from (line for line in f if line.split(" ")[4] == path)
