"""Crash safety of a build's RUN steps: a ``kiln build`` SIGKILLed at any point leaves no
unpacked layer that reads back differently from its blob, and the next build finishes.

RUN steps mount their overlay ``volatile`` (no sync at unmount) and the step commit makes
the upper durable itself before adopting it: these kills land in every phase of a step
(run, unmount, tar, ingest, adoption, cache record) by spreading them over the build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from build_fixtures import ROOT_MARKS
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from mount_points import unmount_under
from snapshot_layers import layer_mismatches

pytestmark = [*ROOT_MARKS, pytest.mark.slow]

STEPS = 12
DOCKERFILE = "FROM busybox\n" + "".join(
    f"RUN mkdir -p /s{i} && echo step {i} > /s{i}/f && dd if=/dev/zero of=/s{i}/z bs=1k "
    f"count={i + 1} 2>/dev/null\n"
    for i in range(STEPS)
)


def _build(root: str, ctx: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kiln.cli.main", "--root", root, "build", "--runtime",
            "runc", "-t", "killed", ctx]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def test_build_killed_anywhere_leaves_no_wrong_layer(kiln_store, busybox_image, tmp_path):  # noqa: F811
    from kiln.image import validate_image
    from kiln.snapshot import Snapshotter

    root = kiln_store.root
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    try:
        # kills spread over a build's life; each build resumes from the cached steps
        for delay in (0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.3, 1.6):
            proc = _build(root, str(ctx))
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            snaps = Snapshotter(kiln_store.snapshot_root)
            try:
                assert layer_mismatches(kiln_store, snaps) == [], f"after a kill at {delay} s"
            finally:
                snaps.close()
        proc = _build(root, str(ctx))
        assert proc.wait(timeout=300) == 0
    finally:
        unmount_under(root)  # what the killed builds left mounted
    rec = kiln_store.resolve_image("killed")
    validate_image(kiln_store, rec.manifest_digest)
    snaps = Snapshotter(kiln_store.snapshot_root)
    try:
        assert layer_mismatches(kiln_store, snaps) == []
    finally:
        snaps.close()
