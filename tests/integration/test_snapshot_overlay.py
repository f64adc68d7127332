"""Overlay snapshots on a real kernel: whiteouts, commit, deep chains, concurrency, fallback."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from kiln.archive.tar_writer import scan_overlay_upper
from kiln.errors import DigestMismatch
from kiln.snapshot import Snapshotter, mount
from kiln.snapshot import snapshotter as snapshotter_module
from kiln.snapshot.mount import mounted
from snapshot_layers import layer_tar, unpack

pytestmark = pytest.mark.root


@pytest.fixture
def snaps(tmp_path) -> Iterator[Snapshotter]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    s = Snapshotter(str(tmp_path / "snapshots"))
    if s.driver != "overlay":
        pytest.skip("overlayfs cannot be mounted here")
    yield s
    s.close()


def test_layer_whiteouts_are_overlay_format(snaps: Snapshotter) -> None:
    unpack(snaps, "c1", None, [("d", None), ("d/x", b"x"), ("gone", b"g")])
    d2 = unpack(snaps, "c2", "c1", [(".wh.gone", b""), ("d", None), ("d/.wh..wh..opq", b"")])
    st = os.lstat(os.path.join(d2, "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(d2, "d"), "trusted.overlay.opaque") == b"y"


def test_changes_in_mount_show_in_upper_scan(snaps: Snapshotter) -> None:
    unpack(
        snaps,
        "c1",
        None,
        [("etc", None), ("etc/passwd", b"root"), ("tmp", None), ("tmp/junk", b"j")],
    )
    spec = snaps.prepare("k", "c1")
    with mounted(spec) as root:
        os.unlink(os.path.join(root, "etc", "passwd"))
        with open(os.path.join(root, "etc", "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
    entries = {(e.path.strip("/"), e.type) for e in scan_overlay_upper(snaps.upper_dir("k"))}
    assert ("etc/passwd", "whiteout") in entries
    assert any(p == "etc/hosts" for p, _ in entries)
    assert not any(p.startswith("tmp") for p, _ in entries)
    upper_inode = os.stat(os.path.join(snaps.upper_dir("k"), "etc", "hosts")).st_ino
    d2 = snaps.commit("k", "c2", "c1")
    assert os.stat(os.path.join(d2, "etc", "hosts")).st_ino == upper_inode
    with mounted(snaps.view("v", "c2")) as root:
        assert sorted(os.listdir(os.path.join(root, "etc"))) == ["hosts"]


@pytest.mark.parametrize("legacy", [False, True], ids=["lowerdir+", "mount(2)"])
def test_120_layer_chain_mounts(snaps: Snapshotter, monkeypatch, legacy: bool) -> None:
    monkeypatch.setattr(mount, "force_legacy", legacy)
    parent = None
    for i in range(120):
        chain = f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}"
        unpack(snaps, chain, parent, [(f"f{i:03d}", str(i).encode())])
        parent = chain
    spec = snaps.prepare("deep", parent)
    assert len(spec.lowers) == 120
    assert sum(len(x) + 1 for x in spec.lowers) > 4096  # absolute paths would not fit a page
    with mounted(spec) as root:
        names = sorted(os.listdir(root))
        assert names == [f"f{i:03d}" for i in range(120)]
        with open(os.path.join(root, "f000")) as f:
            assert f.read() == "0"


CHILD = """
import hashlib, io, sys, time
from kiln.snapshot import Snapshotter
raw = open(sys.argv[2], "rb").read()
diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
class Slow(io.BytesIO):
    def read(self, n=-1):
        time.sleep(0.01)
        return super().read(min(n, 65536) if n and n > 0 else 65536)
def opener():
    print("opened", flush=True)
    return Slow(raw)
s = Snapshotter(sys.argv[1], driver="overlay")
print(s.unpack_layer("shared", None, opener, diff_id), flush=True)
"""


def test_two_processes_unpack_the_same_layer_once(snaps: Snapshotter, tmp_path) -> None:
    raw, _ = layer_tar([(f"file{i}", os.urandom(50_000)) for i in range(40)])
    tar = tmp_path / "layer.tar"
    tar.write_bytes(raw)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, snaps.root, str(tar)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o.count("opened") for o in outs) == 1
    assert outs[0][-1] == outs[1][-1]
    assert snaps.list_layers() == ["shared"]
    assert os.listdir(os.path.join(snaps.root, "layers")) == ["1"]
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []


def test_diff_id_mismatch_leaves_nothing(snaps: Snapshotter) -> None:
    raw, _ = layer_tar([("a", b"1"), (".wh.b", b"")])
    with pytest.raises(DigestMismatch):
        snaps.unpack_layer("c", None, lambda: io.BytesIO(raw), "sha256:" + "1" * 64)
    assert os.listdir(os.path.join(snaps.root, "layers")) == []
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []


def test_copy_fallback_when_overlay_is_forced_off(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")
    s = Snapshotter(str(tmp_path / "s"))
    assert s.driver == "copy"
    unpack(s, "c1", None, [("a", b"1"), ("b", b"2")])
    unpack(s, "c2", "c1", [(".wh.a", b"")])
    spec = s.prepare("k", "c2")
    assert spec.type == "bind"
    with mounted(spec) as root:
        assert os.listdir(root) == ["b"]


def test_probe_falls_back_to_copy(tmp_path, monkeypatch) -> None:
    from kiln.snapshot import snapshotter

    monkeypatch.delenv("KILN_SNAPSHOT_DRIVER", raising=False)
    monkeypatch.setattr(snapshotter.mnt, "overlay_works", lambda _dir: False)
    assert Snapshotter(str(tmp_path / "s")).driver == "copy"


def test_overlay_probe_is_cached_in_the_root_and_redone_when_stale(tmp_path, monkeypatch) -> None:
    from kiln.snapshot import snapshotter as snapshotter_mod

    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    root = str(tmp_path / "probe-root")
    calls = []
    real_probe = mount.overlay_works

    def counting_probe(scratch: str) -> bool:
        calls.append(scratch)
        return real_probe(scratch)

    monkeypatch.setattr(mount, "overlay_works", counting_probe)
    monkeypatch.delenv("KILN_SNAPSHOT_DRIVER", raising=False)

    def fresh_driver() -> str:
        snapshotter_mod._detected.pop(os.path.abspath(root), None)
        s = Snapshotter(root)
        try:
            return s.driver
        finally:
            s.close()

    first = fresh_driver()
    marker = os.path.join(root, "overlay-probe")
    assert len(calls) == 1 and os.path.isfile(marker)
    assert fresh_driver() == first and len(calls) == 1  # the next command only reads the marker
    with open(marker) as f:
        text = f.read()
    with open(marker, "w") as f:  # another kernel booted since
        f.write(text.replace(os.uname().release, "0.0.0-other"))
    assert fresh_driver() == first and len(calls) == 2
    if first != "overlay":
        return
    s = Snapshotter(root)
    spec = s.prepare("k", None)
    os.rmdir(spec.work)  # a mount that fails for real drops the cached answer
    target = str(tmp_path / "mnt")
    os.mkdir(target)
    with pytest.raises(Exception, match="overlay"):
        mount.mount(spec, target)
    assert not os.path.exists(marker)
    s.close()


def test_probe_ahead_probes_on_the_background_thread_once(tmp_path, monkeypatch) -> None:
    """A fresh store's build starts the probe early (``probe_ahead``): it runs on the
    snapshotter's background thread while the caller goes on, ``driver`` waits for its
    answer, and a store whose marker has the answer starts no probe at all."""
    monkeypatch.delenv("KILN_SNAPSHOT_DRIVER", raising=False)
    root = str(tmp_path / "ahead")
    calls: list[str] = []
    release = threading.Event()

    def slow_probe(scratch: str) -> bool:
        calls.append(threading.current_thread().name)
        assert release.wait(60)  # held until the caller has gone on
        return False

    monkeypatch.setattr(mount, "overlay_works", slow_probe)
    snapshotter_module._detected.pop(os.path.abspath(root), None)
    s = Snapshotter(root)
    try:
        s.probe_ahead()
        s.probe_ahead()  # one probe however often it is asked
        release.set()  # the caller got here while the probe was still running
        assert s.driver == "copy"
        assert calls == ["kiln-snapshot-reaper"]
    finally:
        s.close()
    with open(os.path.join(root, "overlay-probe")) as f:
        assert f.read().endswith(" driver=copy\n")
    snapshotter_module._detected.pop(os.path.abspath(root), None)
    again = Snapshotter(root)
    try:
        again.probe_ahead()  # the marker answers: no probe, no thread
        assert again.driver == "copy" and len(calls) == 1
        assert again._reaper.threads() == []
    finally:
        again.close()
    snapshotter_module._detected.pop(os.path.abspath(root), None)


def test_commit_with_next_key_goes_on_in_the_same_directory(snaps: Snapshotter) -> None:
    """A build step's commit: the upper becomes the layer, the snapshot goes on as the
    next key on it (empty upper, the chain one longer) in the same directory, no directory
    left to remove; the layer reads back what was written."""
    unpack(snaps, "c1", None, [("a", b"base")])
    snaps.prepare("k1", "c1")
    active_before = sorted(os.listdir(os.path.join(snaps.root, "active")))
    with mounted(snaps.mounts("k1")) as root:
        with open(os.path.join(root, "new"), "w") as f:
            f.write("step 1")
        os.unlink(os.path.join(root, "a"))
    layer = snaps.commit("k1", "c2", "c1", next_key="k2")
    assert snaps.list_active() == ["k2"]
    assert sorted(os.listdir(os.path.join(snaps.root, "active"))) == active_before
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
    with open(os.path.join(layer, "new")) as f:
        assert f.read() == "step 1"
    assert stat.S_ISCHR(os.lstat(os.path.join(layer, "a")).st_mode)  # the whiteout
    assert os.listdir(snaps.upper_dir("k2")) == []
    assert snaps.mounts("k2").lowers[:2] == (layer, snaps.layer_dirs("c1")[0])
    with mounted(snaps.mounts("k2")) as root:
        assert sorted(os.listdir(root)) == ["new"]
        with open(os.path.join(root, "new2"), "w") as f:
            f.write("step 2")
    # the chain id exists already (another process made it): the upper is dropped and the
    # snapshot still goes on as the next key on that layer
    layer3 = snaps.commit("k2", "c3", "c2", next_key="k3")
    snaps.prepare("k4", "c2")
    with mounted(snaps.mounts("k4")) as root, open(os.path.join(root, "other"), "w") as f:
        f.write("x")
    assert snaps.commit("k4", "c3", "c2", next_key="k5") == layer3
    assert sorted(snaps.list_active()) == ["k3", "k5"]
    with mounted(snaps.mounts("k5")) as root:
        assert sorted(os.listdir(root)) == ["new", "new2"]


def test_recycle_work_gives_a_fresh_work_dir_and_deletes_the_old_one(snaps: Snapshotter) -> None:
    """After a volatile mount's unmount the work dir (kernel scratch and the volatile
    marker) is swapped for an empty one; the old one is gone once settle() returns."""
    unpack(snaps, "c1", None, [("a", b"base")])
    spec = snaps.prepare("k", "c1").as_volatile()
    assert spec.work is not None
    for i in range(3):  # mounts again and again over the recycled work dir
        with mounted(spec) as root, open(os.path.join(root, f"f{i}"), "w") as f:
            f.write("x")
        assert os.listdir(spec.work) != []  # the kernel's work/ (and its volatile marker)
        snaps.recycle_work("k")
        assert os.listdir(spec.work) == []
    snaps.settle()
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
    assert sorted(os.listdir(spec.upper)) == ["f0", "f1", "f2"]


def test_one_deletion_thread_serves_a_builds_steps_and_settle_ends_it(
    snaps: Snapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each build step recycles its work dir: the deletions go to one thread that waits
    for the next (not a new thread per step, each start a wait for a CPU), and ``settle``
    (``close`` at the end of a command) ends it, so the CLI's exit finds no thread."""
    monkeypatch.setattr(snapshotter_module, "REAPER_IDLE", 600.0)  # a slow machine's steps
    snaps = Snapshotter(snaps.root)  # made with that idle time
    unpack(snaps, "c1", None, [("a", b"base")])
    spec = snaps.prepare("k", "c1").as_volatile()
    # another test's snapshotter may still have its deletion thread waiting (a removal
    # deletes on it too): only this one's count
    others = {t for t in threading.enumerate() if t.name == "kiln-snapshot-reaper"}
    reapers = set()
    try:
        for i in range(3):
            with mounted(spec) as root, open(os.path.join(root, f"f{i}"), "w") as f:
                f.write("x")
            snaps.recycle_work("k")
            reapers |= {
                t for t in threading.enumerate() if t.name == "kiln-snapshot-reaper"
            } - others
            deadline = time.monotonic() + 20  # the deletion is done, the thread still waits
            while os.listdir(os.path.join(snaps.root, "tmp")) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert os.listdir(os.path.join(snaps.root, "tmp")) == []
        assert len(reapers) == 1
        (reaper,) = reapers
        assert reaper.is_alive()
        snaps.settle()
        assert not reaper.is_alive()
        assert not {t for t in threading.enumerate() if t.name == "kiln-snapshot-reaper"} - others
    finally:
        snaps.close()


def test_remove_hands_the_tree_to_the_deletion_thread(
    snaps: Snapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removed snapshot (a build's working container, at the end of every build) leaves
    active/ at once; its files are deleted on the background thread, not on the caller's
    (whose rmdirs wait for the journal on a busy disk), and are gone once settle() returns."""
    unpack(snaps, "c1", None, [("a", b"base")])
    spec = snaps.prepare("k", "c1").as_volatile()
    with mounted(spec) as root, open(os.path.join(root, "f"), "w") as f:
        f.write("x")
    deleted_on = []
    real = snapshotter_module.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        deleted_on.append(threading.current_thread().name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(snapshotter_module.shutil, "rmtree", rmtree)
    active = os.listdir(os.path.join(snaps.root, "active"))
    snaps.remove("k")
    assert os.listdir(os.path.join(snaps.root, "active")) == [] != active
    assert snaps.list_active() == []
    snaps.settle()
    assert deleted_on == ["kiln-snapshot-reaper"]
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []


def test_the_next_snapshot_mounts_without_walking_its_chain(
    snaps: Snapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build step's commit goes on as the next key on the new layer: its mount is the new
    layer over the old snapshot's lowers (from no parent too), the spec a walk of the chain
    gives, known without that walk (one query a step, deeper every step)."""
    for parent in (None, "c1"):
        if parent:
            unpack(snaps, "c1", None, [("a", b"base")])
        tag = f"s-{parent}"
        key = f"{tag}-0"
        snaps.prepare(key, parent)
        snaps.mounts(key)  # the step mounted it
        walks: list[str] = []
        real = snaps.layer_dirs

        def counted(chain: str, walks: list[str] = walks, real=real) -> list[str]:
            walks.append(chain)
            return real(chain)

        monkeypatch.setattr(snaps, "layer_dirs", counted)
        for i in range(1, 4):
            with mounted(snaps.mounts(key)) as root, open(os.path.join(root, f"f{i}"), "w") as f:
                f.write("x")
            chain, prev = f"{tag}-c{i}", (f"{tag}-c{i - 1}" if i > 1 else parent)
            snaps.commit(key, chain, prev, next_key=f"{tag}-{i}", synced=False)
            key = f"{tag}-{i}"
            spec = snaps.mounts(key)
            assert walks == []
            assert spec == snaps._mounts(key)  # what the walk gives
            assert spec.lowers == tuple(real(chain))
            walks.clear()
        with mounted(snaps.mounts(key)) as root:
            assert sorted(os.listdir(root)) == sorted(
                ["f1", "f2", "f3", *(["a"] if parent else [])]
            )
        monkeypatch.undo()


def test_recycle_work_moves_the_old_work_dir_into_tmp_young(
    snaps: Snapshotter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old work dir goes into tmp/ as it is (one directory made a step, the fresh work
    dir, not a holder besides), named and dated as a removal under way: another command's
    sweep leaves a young "rm-" entry be."""
    unpack(snaps, "c1", None, [("a", b"base")])
    spec = snaps.prepare("k", "c1").as_volatile()
    with mounted(spec) as root, open(os.path.join(root, "f"), "w") as f:
        f.write("x")
    old = os.stat(spec.work).st_ino
    os.utime(spec.work, (1, 1))  # a long RUN: the work dir was last changed long ago
    reaped: list[str] = []
    monkeypatch.setattr(snaps, "_reap", reaped.append)
    made: list[str] = []
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        made.append(str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    snaps.recycle_work("k")
    monkeypatch.undo()
    assert made == [spec.work]
    (aside,) = reaped
    assert os.path.dirname(aside) == os.path.join(snaps.root, "tmp")
    assert os.path.basename(aside).startswith("rm-")
    assert os.stat(aside).st_ino == old
    assert time.time() - os.lstat(aside).st_mtime < 60
    assert os.listdir(spec.work) == []
    snaps._reap(aside)
    snaps.settle()
    assert os.listdir(os.path.join(snaps.root, "tmp")) == []
