"""Only the store and the snapshotter write under the state root: working containers mount
on the snapshotter's mount points and cache mounts live in the store's directories."""

from __future__ import annotations

import os

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.container import Builder
from kiln.runtime import Mount, RunOptions
from kiln.snapshot.mount import mount
from mount_points import mount_points_under

pytestmark = ROOT_MARKS

STORE_ENTRIES = {"blobs", "ingest", "snapshots", "cache-mounts", "kiln.db", "kiln.db-wal",
                 "kiln.db-shm", "gc.lock"}  # fmt: skip


def test_snapshot_mount_point_goes_with_the_snapshot(build_env):  # noqa: F811
    snaps = build_env.ctx.snapshots
    if snaps.driver != "overlay":
        pytest.skip("overlayfs cannot be mounted here")
    spec = snaps.prepare("k", None)
    path = snaps.mount_point("k")
    assert path.startswith(snaps.root + os.sep) and os.listdir(path) == []
    assert snaps.mount_point("k") == path
    mount(spec, path)
    assert os.path.ismount(path)
    snaps.remove("k")  # unmounts first: removal never reaches into a mounted tree
    assert not os.path.exists(path) and mount_points_under(snaps.root) == []


def test_containers_write_only_through_store_and_snapshots(build_env, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    store = build_env.store
    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM busybox\nRUN --mount=type=cache,id=c1,target=/c echo x > /c/f\n",
                    tags=["cached"])  # fmt: skip
    b = Builder.from_image(build_env.ctx, "busybox")
    try:
        path = b.mount()
        assert path.startswith(store.snapshot_root + os.sep) and os.path.ismount(path)
        assert b.state.mount_point == path
        b.unmount()
        cache = Mount("cache", "", "/c", ("id=c1",))
        code = b.run(["sh", "-c", "cat /c/f > /seen"], RunOptions(args=[], mounts=[cache]))
        assert code == 0
        with b.mounted() as rootfs, open(os.path.join(rootfs, "seen")) as f:
            assert f.read() == "x\n"  # kiln run and builds share a cache id's directory
    finally:
        b.delete()
    assert set(os.listdir(store.root)) <= STORE_ENTRIES
    assert len(store.list_cache_mounts()) == 1
    assert mount_points_under(store.root) == []
    assert build_env.ctx.snapshots.list_active() == []
