"""Snapshotter without mounting: unpack, diff_id checks, chains, specs, gc."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from kiln.errors import AlreadyExists, Conflict, DigestMismatch, InvalidArgument, NotFound
from kiln.snapshot import MountSpec, Snapshotter, holds
from snapshot_layers import layer_tar, read, unpack


@pytest.fixture
def snaps(tmp_path) -> Iterator[Snapshotter]:
    s = Snapshotter(str(tmp_path / "snapshots"), driver="overlay")
    yield s
    s.close()


def test_unpack_layer_and_chain_order(snaps: Snapshotter) -> None:
    d1 = unpack(snaps, "c1", None, {"etc": None, "etc/a": b"A"})
    d2 = unpack(snaps, "c2", "c1", {"etc": None, "etc/b": b"B"})
    assert read(os.path.join(d1, "etc", "a")) == b"A"
    assert snaps.layer_dirs("c2") == [d2, d1]
    assert snaps.has_layer("c1") and not snaps.has_layer("c3")
    assert snaps.list_layers() == ["c1", "c2"]
    # short numeric directory names keep overlay option strings short
    assert os.path.relpath(d2, snaps.root) == os.path.join("layers", "2", "fs")


def test_unpack_is_idempotent(snaps: Snapshotter) -> None:
    first = unpack(snaps, "c1", None, {"a": b"1"})

    def never() -> io.BytesIO:
        raise AssertionError("an unpacked layer must not be read again")

    assert snaps.unpack_layer("c1", None, never, "sha256:" + "0" * 64) == first


def test_diff_id_mismatch_keeps_nothing(snaps: Snapshotter) -> None:
    raw, _ = layer_tar({"a": b"1"})
    with pytest.raises(DigestMismatch) as info:
        snaps.unpack_layer("c1", None, lambda: io.BytesIO(raw), "sha256:" + "0" * 64)
    assert info.value.expected == "sha256:" + "0" * 64
    assert not snaps.has_layer("c1")
    assert os.listdir(os.path.join(snaps.root, "layers")) == []
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []


def test_corrupt_layer_keeps_nothing(snaps: Snapshotter) -> None:
    with pytest.raises(InvalidArgument):
        snaps.unpack_layer("c1", None, lambda: io.BytesIO(b"not a tar" * 100), "sha256:" + "0" * 64)
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
    assert not snaps.has_layer("c1")


def test_parent_must_be_unpacked(snaps: Snapshotter) -> None:
    with pytest.raises(NotFound, match="bottom up"):
        unpack(snaps, "c2", "c1", {"a": b"1"})
    with pytest.raises(NotFound):
        snaps.prepare("k", "c1")


def test_prepare_specs(snaps: Snapshotter) -> None:
    d1 = unpack(snaps, "c1", None, {"a": b"1"})
    spec = snaps.prepare("k", "c1")
    assert isinstance(spec, MountSpec)
    assert spec.type == "overlay" and spec.lowers == (d1,)
    assert spec.upper == snaps.upper_dir("k") and os.path.isdir(spec.upper)
    assert spec.work and os.path.isdir(spec.work)
    assert "userxattr" not in spec.options
    assert set(spec.options) <= {"index=off", "redirect_dir=off", "metacopy=off"}
    assert snaps.mounts("k") == spec
    scratch = snaps.prepare("s", None)
    assert scratch.lowers == (os.path.join(snaps.root, "empty"),)
    assert os.listdir(scratch.lowers[0]) == []
    view = snaps.view("v", "c1")
    assert "ro" in view.options and view.upper is None and d1 in view.lowers
    with pytest.raises(InvalidArgument):
        snaps.upper_dir("v")
    with pytest.raises(AlreadyExists):
        snaps.prepare("k", None)
    assert snaps.list_active() == ["k", "s", "v"]


def test_commit_adopts_upper_by_rename(snaps: Snapshotter) -> None:
    unpack(snaps, "c1", None, {"a": b"1"})
    snaps.prepare("k", "c1")
    upper = snaps.upper_dir("k")
    with open(os.path.join(upper, "new"), "w") as f:
        f.write("x")
    inode = os.stat(os.path.join(upper, "new")).st_ino
    with pytest.raises(InvalidArgument):
        snaps.commit("k", "c2", None)  # wrong parent
    d2 = snaps.commit("k", "c2", "c1")
    assert os.stat(os.path.join(d2, "new")).st_ino == inode  # renamed, not copied
    assert snaps.layer_dirs("c2")[0] == d2
    assert snaps.list_active() == []
    with pytest.raises(NotFound):
        snaps.mounts("k")


def test_remove_and_remove_layer(snaps: Snapshotter) -> None:
    unpack(snaps, "c1", None, {"a": b"1"})
    unpack(snaps, "c2", "c1", {"b": b"2"})
    snaps.prepare("k", "c2")
    with pytest.raises(Conflict):
        snaps.remove_layer("c2")
    snaps.remove("k")
    with pytest.raises(Conflict):
        snaps.remove_layer("c1")
    snaps.remove_layer("c2")
    snaps.remove_layer("c1")
    assert snaps.list_layers() == []
    assert os.listdir(os.path.join(snaps.root, "layers")) == []
    with pytest.raises(NotFound):
        snaps.remove("k")


def test_gc_keeps_chains_and_removes_the_rest(snaps: Snapshotter) -> None:
    snaps.grace_seconds = 0
    unpack(snaps, "c1", None, {"a": b"1"})
    unpack(snaps, "c2", "c1", {"b": b"2"})
    unpack(snaps, "x1", None, {"x": b"x"})
    unpack(snaps, "y1", None, {"y": b"y"})
    snaps.prepare("keep", "y1")
    snaps.prepare("drop", "x1")
    holds.release(os.path.dirname(snaps.upper_dir("drop")))  # as if its process had ended
    os.makedirs(os.path.join(snaps.root, "tmp", "unpack-crashed", "fs"))
    os.makedirs(os.path.join(snaps.root, "layers", "999", "fs"))  # unrecorded
    removed = snaps.gc(keep_layers={"c2"}, keep_active={"keep"})
    assert removed == 2  # x1 and "drop"
    assert sorted(snaps.list_layers()) == ["c1", "c2", "y1"]
    assert snaps.list_active() == ["keep"]
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
    assert "999" not in os.listdir(os.path.join(snaps.root, "layers"))


def test_gc_grace_keeps_new_layers(snaps: Snapshotter) -> None:
    unpack(snaps, "c1", None, {"a": b"1"})
    assert snaps.gc(keep_layers=set(), keep_active=set()) == 0
    assert snaps.has_layer("c1")


def test_copy_driver_prepare_merges(tmp_path) -> None:
    snaps = Snapshotter(str(tmp_path / "s"), driver="copy")
    unpack(snaps, "c1", None, {"etc": None, "etc/a": b"A", "etc/b": b"B"})
    unpack(snaps, "c2", "c1", {"etc": None, "etc/b": b"B2"})
    spec = snaps.prepare("k", "c2")
    assert spec.type == "bind" and spec.upper == spec.source
    assert read(os.path.join(spec.source, "etc", "a")) == b"A"
    assert read(os.path.join(spec.source, "etc", "b")) == b"B2"
    with open(os.path.join(spec.source, "etc", "c"), "w") as f:
        f.write("C")
    d3 = snaps.commit("k", "c3", "c2")
    assert snaps.layer_dirs("c3") == [d3]  # a flat layer is the whole tree
    assert sorted(os.listdir(os.path.join(d3, "etc"))) == ["a", "b", "c"]
    view = snaps.view("v", "c3")
    assert view.type == "bind" and "ro" in view.options


def test_unknown_driver_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidArgument):
        Snapshotter(str(tmp_path / "s"), driver="zfs")
