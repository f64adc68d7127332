"""``Snapshotter.commit`` makes its rename into ``layers/`` durable before the row naming the
layer commits: a crash never leaves a recorded layer whose directory the file system forgot."""

from __future__ import annotations

import os
import sqlite3

import kiln.snapshot.snapshotter as snapshotter_module
from kiln.snapshot import Snapshotter


def test_commit_fsyncs_layers_dir_before_the_row_is_visible(tmp_path, monkeypatch):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    snaps.prepare("k", None)
    with open(os.path.join(snaps.upper_dir("k"), "f"), "w") as f:
        f.write("x")
    seen = []
    real = snapshotter_module.fsync_all

    def watching(fds, dirs=()):
        conn = sqlite3.connect(str(root / "snapshots.db"))
        try:
            visible = conn.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
        finally:
            conn.close()
        seen.append((sorted(dirs), [os.listdir(d) for d in dirs], visible))
        real(fds, dirs)

    monkeypatch.setattr(snapshotter_module, "fsync_all", watching)
    snaps.commit("k", "sha256:" + "1" * 64, None)
    layers = str(root / "layers")
    layer = os.path.join(layers, os.listdir(layers)[0])
    # both directories of the rename (layers/ and the layer's own, holding fs), synced
    # together while the row is not yet there
    assert [(d, v) for d, _, v in seen] == [(sorted([layer, layers]), 0)]
    assert all(listing != [] for listing in seen[0][1])  # after the rename into layers/
    assert snaps.has_layer("sha256:" + "1" * 64)
