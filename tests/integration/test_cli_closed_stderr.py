"""Standard error whose reader went away (a log pipe closed, ``2>&1 >id | head -1``): progress
and warnings are dropped, the work goes on and ends as it would have, the result on stdout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest_plugins = ["fixtures_images"]

pytestmark = [pytest.mark.root]


def _kiln(root: str, *args: str, stderr) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiln", "--root", root, *args],
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=180)  # fmt: skip


def _closed_pipe() -> int:
    """The write end of a pipe nobody reads: every write to it fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


def test_a_closed_stderr_loses_neither_the_work_nor_its_result(tmp_path, busybox_rootfs_tar):
    root = str(tmp_path / "root")
    stderr = _closed_pipe()
    try:
        # import writes "Importing ..." and "Copying image ..." to stderr before its result
        done = _kiln(root, "import", busybox_rootfs_tar, "bb:1", stderr=stderr)
        failed = _kiln(root, "inspect", "nosuchimage", stderr=stderr)
    finally:
        os.close(stderr)
    assert done.returncode == 0
    image_id = done.stdout.strip()
    assert image_id.startswith("sha256:")
    listed = _kiln(root, "images", "-q", "--no-trunc", stderr=subprocess.PIPE)
    assert listed.stdout.split() == [image_id]
    assert failed.returncode == 125  # an error is still an error, with no one to read it
