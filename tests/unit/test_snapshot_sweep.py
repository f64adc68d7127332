"""``Snapshotter.sweep``, the store GC's sweeper: what it keeps, what a deletion releases,
what it reports, and that an interrupted sweep leaves only garbage the next one removes."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator

import pytest

from kiln.snapshot import Snapshotter
from snapshot_layers import unpack


@pytest.fixture
def snaps(tmp_path) -> Iterator[Snapshotter]:
    s = Snapshotter(str(tmp_path / "snapshots"), driver="overlay")
    yield s
    s.close()


def in_a_process_that_ends(action) -> None:
    """Run ``action`` in a child process that then exits (what a ``kiln`` command does)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            action()
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


def du(snaps: Snapshotter) -> int:
    total = 0
    for sub in ("layers", "active", "tmp"):
        for base, dirs, files in os.walk(os.path.join(snaps.root, sub)):
            total += sum(os.lstat(os.path.join(base, n)).st_size for n in dirs + files)
    return total


def test_a_released_layer_goes_inside_the_grace_period(snaps: Snapshotter) -> None:
    unpack(snaps, "gone", None, {"a": b"x" * 5000})
    unpack(snaps, "kept", None, {"b": b"y"})
    unpack(snaps, "young", None, {"c": b"z"})  # no image ever released it: in flight
    released = {"gone": time.time(), "kept": time.time()}
    removed, freed = snaps.sweep({"kept"}, set(), released)
    assert removed == 1
    assert sorted(snaps.list_layers()) == ["kept", "young"]
    assert freed > 5000


def test_a_layer_unpacked_again_after_the_release_keeps_its_grace(snaps: Snapshotter) -> None:
    released_at = time.time() - 5
    unpack(snaps, "again", None, {"a": b"1"})
    assert snaps.sweep(set(), set(), {"again": released_at}) == (0, 0)
    assert snaps.has_layer("again")


def test_parents_of_kept_layers_and_snapshots_stay_even_if_released(snaps: Snapshotter) -> None:
    unpack(snaps, "base", None, {"a": b"1"})
    unpack(snaps, "top", "base", {"b": b"2"})
    unpack(snaps, "other", None, {"c": b"3"})
    snaps.prepare("container", "other")
    now = time.time()
    removed, _ = snaps.sweep({"top"}, {"container"}, {"base": now, "other": now})
    assert removed == 0
    assert sorted(snaps.list_layers()) == ["base", "other", "top"]


def test_bytes_freed_is_what_left_the_disk_and_dry_run_changes_nothing(snaps) -> None:
    snaps.grace_seconds = 0
    unpack(snaps, "c1", None, {"d": None, "d/a": os.urandom(20_000), "b": b"b" * 3000})
    unpack(snaps, "c2", "c1", {"c": os.urandom(7000)})
    in_a_process_that_ends(lambda: Snapshotter(snaps.root).prepare("stale", "c2"))
    os.makedirs(os.path.join(snaps.root, "tmp", "unpack-crashed", "fs"))
    with open(os.path.join(snaps.root, "tmp", "unpack-crashed", "fs", "junk"), "wb") as f:
        f.write(b"j" * 1234)
    before = du(snaps)
    dry = snaps.sweep(set(), set(), {}, dry_run=True)
    assert du(snaps) == before and len(snaps.list_layers()) == 2
    removed, freed = snaps.sweep(set(), set(), {})
    assert (removed, freed) == tuple(dry) == (3, before - du(snaps))
    assert freed > 30_000
    assert snaps.list_layers() == [] and snaps.list_active() == []


def test_an_interrupted_sweep_leaves_only_garbage_the_next_one_removes(snaps, monkeypatch):
    snaps.grace_seconds = 0
    unpack(snaps, "a", None, {"f": b"1" * 4000})
    unpack(snaps, "b", None, {"g": b"2" * 4000})
    unpack(snaps, "keep", None, {"h": b"3"})
    calls = []
    real = Snapshotter._move_aside

    def dies_after_one(self, path):
        if calls:
            raise KeyboardInterrupt("killed mid-sweep")
        calls.append(path)
        return real(self, path)

    monkeypatch.setattr(Snapshotter, "_move_aside", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        snaps.sweep({"keep"}, set(), {})
    monkeypatch.undo()
    # consistent at once: nothing recorded points at a missing or half-removed directory
    assert snaps.list_layers() == ["keep"]
    assert os.path.isfile(os.path.join(snaps.layer_dirs("keep")[0], "h"))
    again = Snapshotter(snaps.root)
    removed, freed = again.sweep({"keep"}, set(), {})
    assert removed == 0 and freed > 4000  # the unrecorded directory the crash left
    assert sorted(os.listdir(os.path.join(snaps.root, "layers"))) == ["3"]
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []


def test_a_snapshot_a_live_process_holds_survives_however_old(snaps: Snapshotter) -> None:
    """A RUN with ``--mount=type=bind,from=...`` keeps a read-only view, named by no
    container, for as long as it runs; a prune beside it must not take it away."""
    snaps.grace_seconds = 0
    unpack(snaps, "c1", None, {"a": b"1"})
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            Snapshotter(snaps.root).view("bind-from", "c1")
            os.write(ready_w, b"x")
            os.read(done_r, 1)  # holds it until told to end
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"x"
        assert snaps.sweep(set(), set(), {"c1": time.time()}) == (0, 0)
        assert snaps.list_active() == ["bind-from"] and snaps.has_layer("c1")
        mine = snaps.view("mine", "c1")  # this process's own are held too
        assert mine.lowers and snaps.sweep(set(), set(), {})[0] == 0
        snaps.remove("mine")
    finally:
        os.write(done_w, b"x")
        assert os.waitpid(pid, 0)[1] == 0
    removed, _ = snaps.sweep(set(), set(), {})  # its process has ended
    assert removed == 2 and snaps.list_active() == [] and snaps.list_layers() == []


def test_a_ctrl_c_while_the_sweep_deletes_waits_until_nothing_is_left(snaps, monkeypatch) -> None:
    """A Ctrl-C once the sweep has removed the rows (here: right after its first deletion)
    is raised only when every directory is gone: ``kiln system prune`` interrupted there left
    the rest in ``tmp/`` (and a directory not yet moved aside, unrecorded in ``layers/``)."""
    snaps.grace_seconds = 0
    for i in range(3):
        unpack(snaps, f"c{i}", None, {"a": b"x" * 100})
    real = shutil.rmtree

    def rmtree_then_ctrl_c(path, *args, **kwargs):
        real(path, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Python's handler: a KeyboardInterrupt here

    monkeypatch.setattr(shutil, "rmtree", rmtree_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        snaps.sweep(set(), set())
    monkeypatch.undo()
    assert snaps.list_layers() == []
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
    assert os.listdir(os.path.join(snaps.root, "layers")) == []
