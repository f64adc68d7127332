"""A fresh store's first build probes overlayfs on the snapshotter's background thread,
started as the build begins: the probe's mount and unmount (15-40 ms of waiting on a busy
machine) overlap the Dockerfile's parse, the base lookup and the cache checks instead of
holding up the first step. The image is the one a build without the probe ahead makes."""

from __future__ import annotations

import os
import threading

import pytest

from build_fixtures import ROOT_MARKS  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build.options import BuildOptions
from kiln.ops.build import build
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.snapshot import mount
from kiln.snapshot import snapshotter as snapshotter_module
from kiln.store import Store

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]


def test_a_fresh_stores_build_probes_overlay_in_the_background(
    kiln_store,  # noqa: F811
    busybox_image,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.delenv("KILN_SNAPSHOT_DRIVER", raising=False)
    probed_on: list[str] = []
    real_probe = mount.overlay_works

    def probe(scratch: str) -> bool:
        probed_on.append(threading.current_thread().name)
        return real_probe(scratch)

    monkeypatch.setattr(mount, "overlay_works", probe)
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    (ctx_dir / "Containerfile").write_text("FROM busybox\nRUN echo hello > /hello\n")
    store = Store(kiln_store.root)
    snaps_root = os.path.abspath(store.snapshot_root)
    snapshotter_module._detected.pop(snaps_root, None)  # fresh: no answer in this process
    ctx = Context(store=store, events=ListSink())
    try:
        build(ctx, BuildOptions(context=str(ctx_dir), tags=["probed"]))
        assert store.resolve_image("localhost/probed:latest") is not None
    finally:
        ctx.close()  # the store and the snapshotter with it
        snapshotter_module._detected.pop(snaps_root, None)
    assert probed_on == ["kiln-snapshot-reaper"]
    assert os.path.isfile(os.path.join(snaps_root, "overlay-probe"))
