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
    real = snapshotter_module.fsync_dir

    def watching(path):
        conn = sqlite3.connect(str(root / "snapshots.db"))
        try:
            visible = conn.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
        finally:
            conn.close()
        seen.append((path, os.listdir(path), visible))
        real(path)

    monkeypatch.setattr(snapshotter_module, "fsync_dir", watching)
    snaps.commit("k", "sha256:" + "1" * 64, None)
    layers = str(root / "layers")
    assert [(p, v) for p, _, v in seen] == [(layers, 0)]  # synced while the row is not yet there
    assert seen[0][1] != []  # after the rename into layers/
    assert snaps.has_layer("sha256:" + "1" * 64)
