"""A build's RUN runs on a ``volatile`` overlay (no file-system sync at unmount), and the
upper it adopts as the next layer is made durable and reads back as its blob says.

A working container of ``kiln from``/``kiln run`` keeps a synced mount: it can outlive
the process, and a volatile upper left by a crash could never be mounted again.
"""

from __future__ import annotations

import os

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from snapshot_layers import layer_mismatches

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox
RUN grep -c fsync=volatile /proc/self/mountinfo > /volatile-mounts || true
RUN cat /volatile-mounts > /seen; mkdir -p /d/e && echo deep > /d/e/f
RUN rm /seen && echo last > /last
"""


def _markers(root: str) -> list[str]:
    """Volatile markers in a work dir that will be mounted again (not in ``tmp/``: used
    work dirs wait there for their deletion, never mounted)."""
    tmp = os.path.join(root, "tmp") + os.sep
    return [
        d
        for d, _s, _f in os.walk(root)
        if d.endswith(os.path.join("incompat", "volatile")) and not d.startswith(tmp)
    ]


def test_build_runs_on_volatile_overlays_and_layers_read_back(build_env):  # noqa: F811

    ctx = build_env.context_dir()
    build_env.build(ctx, DOCKERFILE, tags=["vol"])
    files = build_env.files("vol")
    assert files["volatile-mounts"] == b"1\n"  # the rootfs, and only it
    assert files["d/e/f"] == b"deep\n" and files["last"] == b"last\n"
    snaps = build_env.ctx.snapshots
    assert layer_mismatches(build_env.store, snaps) == []
    # a clean unmount leaves no marker that would refuse the next mount of an upper
    assert _markers(snaps.root) == []
    # the adopted layers mount again: a build on top of them runs
    build_env.build(ctx, "FROM vol\nRUN cat /d/e/f /last > /both\n", tags=["vol2"])
    assert build_env.files("vol2")["both"] == b"deep\nlast\n"


def test_a_working_container_mount_is_not_volatile(build_env):  # noqa: F811
    from kiln.container import Builder

    b = Builder.from_image(build_env.ctx, "busybox")
    try:
        code = b.run(["sh", "-c", "grep -c fsync=volatile /proc/self/mountinfo > /n || true"])
        assert code == 0
        with b.mounted() as rootfs, open(os.path.join(rootfs, "n")) as f:
            assert f.read() == "0\n"
    finally:
        b.delete()
