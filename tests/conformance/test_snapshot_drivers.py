"""Snapshotter conformance: overlay and copy drivers show the same filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kiln.snapshot import Snapshotter
from kiln.snapshot.mount import mounted
from snapshot_layers import read, unpack

pytestmark = pytest.mark.root


@pytest.fixture(params=["overlay", "copy"])
def snaps(request, tmp_path) -> Iterator[Snapshotter]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    s = Snapshotter(str(tmp_path / "snapshots"), driver=request.param)
    if request.param == "overlay" and s.driver != "overlay":
        pytest.skip("overlayfs cannot be mounted here")
    unpack(
        s,
        "c1",
        None,
        [("etc", None), ("etc/a", b"A"), ("etc/b", b"B"), ("opt", None), ("opt/old", b"old")],
    )
    unpack(
        s,
        "c2",
        "c1",
        [
            ("etc", None),
            ("etc/.wh.a", b""),
            ("etc/c", b"C"),
            ("opt", None),
            ("opt/.wh..wh..opq", b""),
            ("opt/new", b"new"),
        ],
    )
    yield s
    s.close()


def test_merged_view_applies_whiteouts(snaps: Snapshotter) -> None:
    with mounted(snaps.prepare("k", "c2")) as root:
        assert sorted(os.listdir(os.path.join(root, "etc"))) == ["b", "c"]
        assert sorted(os.listdir(os.path.join(root, "opt"))) == ["new"]
        assert read(os.path.join(root, "etc", "c")) == b"C"


def test_writes_commit_into_a_new_layer(snaps: Snapshotter) -> None:
    with mounted(snaps.prepare("k", "c2")) as root:
        os.unlink(os.path.join(root, "etc", "b"))
        with open(os.path.join(root, "etc", "d"), "w") as f:
            f.write("D")
    snaps.commit("k", "c3", "c2")
    with mounted(snaps.view("v", "c3")) as root:
        assert sorted(os.listdir(os.path.join(root, "etc"))) == ["c", "d"]
        with pytest.raises(OSError):
            open(os.path.join(root, "etc", "e"), "w")  # noqa: SIM115 - a view is read-only


def test_scratch_snapshot_starts_empty(snaps: Snapshotter) -> None:
    with mounted(snaps.prepare("s", None)) as root:
        assert os.listdir(root) == []
        with open(os.path.join(root, "f"), "w") as f:
            f.write("x")
    snaps.commit("s", "s1", None)
    with mounted(snaps.view("v", "s1")) as root:
        assert os.listdir(root) == ["f"]


def test_snapshots_are_independent(snaps: Snapshotter) -> None:
    with mounted(snaps.prepare("a", "c2")) as ra, mounted(snaps.prepare("b", "c2")) as rb:
        with open(os.path.join(ra, "etc", "c"), "w") as f:
            f.write("changed")
        assert read(os.path.join(rb, "etc", "c")) == b"C"
    with mounted(snaps.view("v", "c2")) as root:
        assert read(os.path.join(root, "etc", "c")) == b"C"
