"""Where the boot id is unknown, an unpacked layer is durable before the row that records
it commits: after a power loss a recorded layer is never a tree with files missing or
empty. A pull's staged layers are synced together, once, and only after their diff_ids
are checked. (With a boot id they are recorded without the sync: see
test_snapshot_boot_durability.)"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import threading

import pytest

import kiln.snapshot.meta as meta_module
import kiln.snapshot.snapshotter as snapshotter_module
from kiln.errors import DigestMismatch
from kiln.snapshot import Snapshotter
from kiln.snapshot.staged import StagedLayer, discard_staged
from kiln.util.locks import try_lock
from snapshot_layers import layer_tar


def _rows(root) -> int:
    conn = sqlite3.connect(str(root / "snapshots.db"))
    try:
        return conn.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """Snapshotter + what each tree sync saw: (files under the trees, rows recorded)."""
    monkeypatch.setattr(meta_module, "BOOT_ID_FILE", str(tmp_path / "no-boot-id"))
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    seen: list[tuple[list[str], int]] = []
    real = snapshotter_module.fsync_trees

    def watching(paths, *a, **kw):
        files = sorted(
            os.path.relpath(os.path.join(d, f), p)
            for p in paths
            for d, _, names in os.walk(p)
            for f in names
        )
        seen.append((files, _rows(root)))
        return real(paths, *a, **kw)

    monkeypatch.setattr(snapshotter_module, "fsync_trees", watching)
    return root, snaps, seen


def test_unpack_layer_syncs_the_whole_tree_before_recording_it(watched):
    root, snaps, seen = watched
    raw, diff_id = layer_tar({"etc/a": b"a" * 5000, "b": b"b"})
    path = snaps.unpack_layer(diff_id, None, lambda: io.BytesIO(raw), diff_id)
    assert seen == [(["b", "etc/a"], 0)]  # every file there, no row yet
    assert _rows(root) == 1
    with open(os.path.join(path, "etc/a"), "rb") as f:
        assert f.read() == b"a" * 5000


def test_staged_layers_are_checked_then_synced_once_then_recorded(watched):
    root, snaps, seen = watched
    low, low_id = layer_tar({"low": b"1"})
    top, top_id = layer_tar({"top": b"2"})
    staged: list[StagedLayer] = []
    snaps.stage_layer(staged.append)
    snaps.stage_layer(staged.append)
    staged[0].apply(io.BytesIO(low))
    staged[1].apply(io.BytesIO(top))
    top_chain = "sha256:" + hashlib.sha256(f"{low_id} {top_id}".encode()).hexdigest()
    with pytest.raises(DigestMismatch):  # a wrong diff_id: nothing synced, nothing recorded
        snaps.adopt_staged([(staged[0], low_id, None, low_id), (staged[1], top_chain, low_id,
                                                                 low_id)])  # fmt: skip
    assert seen == [] and _rows(root) == 0
    snaps.adopt_staged([(staged[0], low_id, None, low_id), (staged[1], top_chain, low_id, top_id)])
    assert seen == [(["low", "top"], 0)]  # one sync for both trees, before either row
    assert snaps.list_layers() == [low_id, top_chain]
    assert os.listdir(root / "tmp") == []


def test_a_discarded_staged_layer_leaves_nothing(watched):
    root, snaps, _ = watched
    raw, _ = layer_tar({"x": b"x"})
    with snaps.stage_layer(lambda s: None) as staged:
        staged.apply(io.BytesIO(raw))
    assert os.listdir(root / "tmp") == [] and snaps.list_layers() == []


def test_a_staged_layer_its_caller_fails_to_keep_is_dropped_and_frees_the_root_lock(watched):
    root, snaps, _ = watched

    def refuse(staged: StagedLayer) -> None:
        raise RuntimeError("no room for it")

    with pytest.raises(RuntimeError, match="no room"):
        snaps.stage_layer(refuse)
    assert os.listdir(root / "tmp") == []
    fd = os.open(root / "snapshots.lock", os.O_RDWR)
    try:
        assert try_lock(fd), "the root lock is still held shared"
    finally:
        os.close(fd)


def test_discard_staged_drops_every_tree_left_once(watched):
    root, snaps, _ = watched
    raw, _ = layer_tar({"x": b"x"})
    left: dict[str, StagedLayer] = {}
    snaps.stage_layer(lambda s: left.update({"sha256:a": s}))
    snaps.stage_layer(lambda s: left.update({"sha256:b": s}))
    left["sha256:a"].apply(io.BytesIO(raw))
    trees = list(left.values())
    discard_staged(left, threading.Lock())
    assert left == {} and all(t.done for t in trees)
    assert os.listdir(root / "tmp") == [] and snaps.list_layers() == []
    discard_staged(left)  # nothing left: nothing to do


def test_start_writeback_is_a_hint_that_never_raises(tmp_path):
    from kiln.util.atomic import start_writeback

    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    with open(path, "rb+") as f:
        start_writeback(f.fileno())  # a file: writeback starts
    r, w = os.pipe()
    try:
        start_writeback(r)  # not a file (ESPIPE), and a closed descriptor: no error either
    finally:
        os.close(r)
        os.close(w)
    start_writeback(r)
