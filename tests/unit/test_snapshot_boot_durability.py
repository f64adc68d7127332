"""Unpacked layers and a build step's committed layers are recorded without waiting for the
disk, marked with the boot id; a row left by another boot (a power loss or kernel crash came
between) is dropped when the snapshotter opens and the layer is unpacked again from its blob
on the next use. Rows of this boot and durable rows are kept."""

from __future__ import annotations

import io
import os
import sqlite3

import pytest

import kiln.snapshot.meta as meta_module
import kiln.snapshot.snapshotter as snapshotter_module
from kiln.image.unpack import unpack_layers
from kiln.oci import Digest
from kiln.oci.descriptor import Descriptor
from kiln.snapshot import Snapshotter, holds
from snapshot_layers import layer_tar


def _boots(root) -> dict[str, str]:
    conn = sqlite3.connect(str(root / "snapshots.db"))
    try:
        return dict(conn.execute("SELECT chain_id, boot FROM layers").fetchall())
    finally:
        conn.close()


def _set_boot(root, chain_id: str, boot: str) -> None:
    conn = sqlite3.connect(str(root / "snapshots.db"))
    try:
        with conn:
            conn.execute("UPDATE layers SET boot=? WHERE chain_id=?", (boot, chain_id))
    finally:
        conn.close()


@pytest.fixture
def boot(tmp_path, monkeypatch):
    """The boot id file, with this boot's id in it; write another to fake a reboot."""
    path = tmp_path / "boot_id"
    path.write_text("boot-one\n")
    monkeypatch.setattr(meta_module, "BOOT_ID_FILE", str(path))
    return path


@pytest.fixture
def syncs(monkeypatch):
    seen: list[list[str]] = []
    real = snapshotter_module.fsync_trees

    def watching(paths, *a, **kw):
        seen.append(list(paths))
        return real(paths, *a, **kw)

    monkeypatch.setattr(snapshotter_module, "fsync_trees", watching)
    return seen


def _unpack(snaps: Snapshotter, raw: bytes, diff_id: str) -> str:
    return snaps.unpack_layer(diff_id, None, lambda: io.BytesIO(raw), diff_id)


def test_an_unpacked_layer_is_recorded_without_a_sync_marked_with_the_boot(tmp_path, boot, syncs):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, diff_id = layer_tar({"a": b"a" * 5000})
    path = _unpack(snaps, raw, diff_id)
    staged = snaps.stage_layer(lambda s: None)
    raw2, diff2 = layer_tar({"b": b"b"})
    staged.apply(io.BytesIO(raw2))
    snaps.adopt_staged([(staged, diff2, None, diff2)])
    assert syncs == []  # nobody waited for the disk
    assert _boots(root) == {diff_id: "boot-one", diff2: "boot-one"}
    with open(os.path.join(path, "a"), "rb") as f:
        assert f.read() == b"a" * 5000


def test_a_row_of_this_boot_is_kept_and_a_durable_one_too(tmp_path, boot):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, diff_id = layer_tar({"a": b"1"})
    raw2, diff2 = layer_tar({"b": b"2"})
    _unpack(snaps, raw, diff_id)
    _unpack(snaps, raw2, diff2)
    _set_boot(root, diff2, "")  # durable (how every older row reads after the migration)
    snaps.close()
    again = Snapshotter(str(root), driver="copy")  # same boot
    assert sorted(again.list_layers()) == sorted([diff_id, diff2])
    boot.write_text("boot-two\n")  # a reboot: the durable row stays
    _set_boot(root, diff_id, "")
    third = Snapshotter(str(root), driver="copy")
    assert sorted(third.list_layers()) == sorted([diff_id, diff2])


def test_a_row_of_another_boot_is_dropped_and_unpacked_again_on_use(tmp_path, boot):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    low, low_id = layer_tar({"low": b"low"})
    top, top_id = layer_tar({"top": b"top"})
    descs = [Descriptor("application/vnd.oci.image.layer.v1.tar", Digest.parse(d), len(r))
             for d, r in ((low_id, low), (top_id, top))]  # fmt: skip
    blobs = {low_id: low, top_id: top}
    top_chain = unpack_layers(
        snaps, descs, [low_id, top_id], lambda d: io.BytesIO(blobs[str(d.digest)])
    )
    old_dir = snaps.layer_dirs(low_id)[0]
    _set_boot(root, top_chain, "")  # a durable layer above it (e.g. a committed RUN step)
    # the power loss lost the low layer's file contents (written, never synced)
    with open(os.path.join(old_dir, "low"), "wb"):
        pass
    snaps.close()
    boot.write_text("boot-two\n")

    snaps = Snapshotter(str(root), driver="copy")
    assert snaps.list_layers() == [top_chain]  # the torn one went, row and directory
    assert not os.path.exists(os.path.dirname(old_dir))
    assert (
        unpack_layers(snaps, descs, [low_id, top_id], lambda d: io.BytesIO(blobs[str(d.digest)]))
        == top_chain
    )
    dirs = snaps.layer_dirs(top_chain)
    assert len(dirs) == 2 and dirs[1] != old_dir  # re-unpacked under the same chain id
    with open(os.path.join(dirs[1], "low"), "rb") as f:
        assert f.read() == b"low"
    assert _boots(root)[low_id] == "boot-two"


def test_a_layer_a_working_snapshot_rests_on_is_kept_across_a_boot(tmp_path, boot):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, diff_id = layer_tar({"a": b"1"})
    _unpack(snaps, raw, diff_id)
    snaps.prepare("container", diff_id)
    snaps.close()
    boot.write_text("boot-two\n")
    snaps = Snapshotter(str(root), driver="copy")
    assert snaps.list_layers() == [diff_id]
    snaps.mounts("container")  # still mountable
    # never vouched for: it keeps its old mark, so gc does not mark it durable ...
    snaps.promote_after_seconds = 0
    snaps.sweep({diff_id}, {"container"})
    assert _boots(root)[diff_id] == "boot-one"
    # ... and it goes at the first open after nothing rests on it
    snaps.remove("container")
    snaps.close()
    assert Snapshotter(str(root), driver="copy").list_layers() == []


def _process_gone(root) -> None:
    """What a power loss does to this process's holds on its snapshots (``holds``)."""
    for n in os.listdir(root / "active"):
        holds.release(str(root / "active" / n))


def _active_rows(root) -> dict[str, str]:
    conn = sqlite3.connect(str(root / "snapshots.db"))
    try:
        return dict(conn.execute("SELECT key, boot FROM active").fetchall())
    finally:
        conn.close()


def test_views_and_build_containers_of_another_boot_keep_no_torn_layer(tmp_path, boot):
    """A build's container (volatile) and a view never outlive their boot: after another
    boot they are dropped, and the not-yet-durable layers they rested on with them (kept,
    they would be trusted again; the build's step layers are re-derivable from blobs)."""
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, low = layer_tar({"a": b"1"})
    raw2, other = layer_tar({"b": b"2"})
    _unpack(snaps, raw, low)
    _unpack(snaps, raw2, other)
    snaps.prepare("build-container", low, volatile=True)
    snaps.view("a-view", other)
    snaps.prepare("kiln-from", None)
    assert _active_rows(root) == {"build-container": "boot-one", "a-view": "boot-one",
                                  "kiln-from": ""}  # fmt: skip
    dirs = [os.path.dirname(snaps.upper_dir("build-container")), os.path.dirname(
        snaps.layer_dirs(low)[0])]  # fmt: skip
    snaps.close()
    again = Snapshotter(str(root), driver="copy")  # same boot: all stay
    assert sorted(again.list_active()) == ["a-view", "build-container", "kiln-from"]
    again.close()
    boot.write_text("boot-two\n")
    # held by a live process (a root two machines share): kept, and what it rests on
    held = Snapshotter(str(root), driver="copy")
    assert sorted(held.list_active()) == ["a-view", "build-container", "kiln-from"]
    assert sorted(held.list_layers()) == sorted([low, other])
    held.close()
    _process_gone(root)
    snaps = Snapshotter(str(root), driver="copy")
    assert snaps.list_active() == ["kiln-from"]
    assert snaps.list_layers() == []
    assert not any(os.path.exists(d) for d in dirs)


def test_a_build_step_commit_is_recorded_without_a_sync_and_dropped_after_a_boot(
    tmp_path, boot, syncs, monkeypatch
):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    waited: list[object] = []
    real = snapshotter_module.fsync_all
    monkeypatch.setattr(
        snapshotter_module, "fsync_all", lambda *a, **kw: (waited.append(a), real(*a, **kw))
    )
    snaps.prepare("step", None, volatile=True)
    with open(os.path.join(snaps.upper_dir("step"), "f"), "w") as f:
        f.write("x")
    step = "sha256:" + "1" * 64
    path = snaps.commit("step", step, None, next_key="next", synced=False)
    assert syncs == [] and waited == []  # nobody waited for the disk
    assert _boots(root) == {step: "boot-one"}
    assert _active_rows(root) == {"next": "boot-one"}  # the build goes on, still volatile
    with open(os.path.join(path, "f")) as f:
        assert f.read() == "x"
    # a synced commit (the caller made its tree durable) waits for its renames
    snaps.prepare("kept", None)
    durable = "sha256:" + "2" * 64
    snaps.commit("kept", durable, None, synced=True)
    assert len(waited) == 1 and _boots(root)[durable] == ""
    snaps.close()
    _process_gone(root)
    boot.write_text("boot-two\n")
    snaps = Snapshotter(str(root), driver="copy")
    assert snaps.list_layers() == [durable] and snaps.list_active() == []
    assert not os.path.exists(os.path.dirname(path))


def test_a_step_commit_without_a_boot_id_syncs_the_tree_and_is_durable(
    tmp_path, monkeypatch, syncs
):
    monkeypatch.setattr(meta_module, "BOOT_ID_FILE", str(tmp_path / "missing"))
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    snaps.prepare("step", None, volatile=True)
    upper = snaps.upper_dir("step")
    step = "sha256:" + "1" * 64
    snaps.commit("step", step, None, next_key="next", synced=False)
    assert syncs == [[upper]] and _boots(root) == {step: ""}


def test_without_a_boot_id_the_tree_is_synced_and_recorded_durable(tmp_path, monkeypatch, syncs):
    monkeypatch.setattr(meta_module, "BOOT_ID_FILE", str(tmp_path / "missing"))
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, diff_id = layer_tar({"a": b"1"})
    _unpack(snaps, raw, diff_id)
    assert len(syncs) == 1 and _boots(root) == {diff_id: ""}


def test_gc_marks_layers_written_back_long_ago_durable_with_one_syncfs(tmp_path, boot, monkeypatch):
    root = tmp_path / "snaps"
    snaps = Snapshotter(str(root), driver="copy")
    raw, old_id = layer_tar({"a": b"1"})
    raw2, new_id = layer_tar({"b": b"2"})
    _unpack(snaps, raw, old_id)
    _unpack(snaps, raw2, new_id)
    conn = sqlite3.connect(str(root / "snapshots.db"))
    with conn:
        conn.execute("UPDATE layers SET created=created-120 WHERE chain_id=?", (old_id,))
    conn.close()
    calls: list[str] = []
    real = snapshotter_module.syncfs
    monkeypatch.setattr(snapshotter_module, "syncfs", lambda p: (calls.append(p), real(p)))
    snaps.sweep({old_id, new_id}, set(), dry_run=True)
    assert calls == [] and _boots(root) == {old_id: "boot-one", new_id: "boot-one"}
    snaps.sweep({old_id, new_id}, set())
    assert len(calls) == 1  # one wait, for the old one only; the fresh one stays as it was
    assert _boots(root) == {old_id: "", new_id: "boot-one"}
    snaps.sweep({old_id, new_id}, set())
    assert len(calls) == 1  # nothing old left to mark: no syncfs
    snaps.close()
    boot.write_text("boot-two\n")  # a reboot: the durable one stays, the fresh one goes
    assert Snapshotter(str(root), driver="copy").list_layers() == [old_id]
