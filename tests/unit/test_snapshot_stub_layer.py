"""``Snapshotter.stub_layer``: the empty mountpoints a run's overlay shows from beneath the
image's layers, made once per set of names, whole, with fixed modes whatever the umask."""

from __future__ import annotations

import os
import stat

from kiln.snapshot import Snapshotter, stubs


def test_stub_layer_is_made_once_with_fixed_modes(tmp_path):
    snaps = Snapshotter(str(tmp_path / "snapshots"), driver="copy")
    old = os.umask(0o077)
    try:
        path = snaps.stub_layer(["/proc", "/dev"], ["/etc/hosts", "/etc/hostname"])
    finally:
        os.umask(old)
        snaps.close()
    found = {}
    for d, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(d, name)
            st = os.lstat(full)
            found[os.path.relpath(full, path)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777)
            assert st.st_size == 0 or stat.S_ISDIR(st.st_mode)
    dir_, reg = stat.S_IFDIR, stat.S_IFREG
    assert found == {
        "proc": (dir_, 0o755), "dev": (dir_, 0o755), "etc": (dir_, 0o755),
        "etc/hosts": (reg, 0o644), "etc/hostname": (reg, 0o644),
    }  # fmt: skip
    assert os.stat(path).st_mode & 0o7777 == 0o755
    again = Snapshotter(str(tmp_path / "snapshots"), driver="copy")
    try:  # the same names: the same directory, not made again; others: another one
        assert again.stub_layer(["/dev", "/proc"], ["/etc/hostname", "/etc/hosts"]) == path
        assert again.stub_layer(["/proc"], []) != path
        assert os.listdir(os.path.join(again.root, "tmp")) == []
    finally:
        again.close()


DIRS, FILES = ["/proc", "/dev"], ["/etc/hosts"]


def _stubs(snaps: Snapshotter) -> list[str]:
    top = os.path.join(snaps.root, "stubs")
    return sorted(os.listdir(top)) if os.path.isdir(top) else []


def test_a_sweep_removes_a_stub_nobody_holds_once_its_grace_is_over(tmp_path):
    snaps = Snapshotter(str(tmp_path / "snapshots"), driver="copy")
    try:
        path = snaps.stub_layer(DIRS, FILES)
        snaps.sweep(set(), set())
        assert _stubs(snaps) == [os.path.basename(path)]  # young: kept for the next RUN
        os.utime(path, (0, 0))  # made long ago (another kiln's set of names, say)
        snaps.sweep(set(), set())
        assert _stubs(snaps) == []
        assert os.listdir(os.path.join(snaps.root, "tmp")) == []
        assert snaps.stub_layer(DIRS, FILES) == path  # the next RUN makes it again
    finally:
        snaps.close()


def test_a_stub_a_run_holds_survives_the_sweep_however_old(tmp_path):
    snaps = Snapshotter(str(tmp_path / "snapshots"), driver="copy")
    snaps.grace_seconds = 0
    try:
        with snaps.held_stub(DIRS, FILES) as path:
            os.utime(path, (0, 0))
            snaps.sweep(set(), set())
            assert _stubs(snaps) == [os.path.basename(path)]
        snaps.sweep(set(), set())
        assert _stubs(snaps) == []
    finally:
        snaps.close()


def test_a_stub_swept_between_its_check_and_its_hold_is_made_again_and_held(tmp_path, monkeypatch):
    snaps = Snapshotter(str(tmp_path / "snapshots"), driver="copy")
    snaps.grace_seconds = 0
    real_hold = stubs.hold
    raced = []

    def sweep_first(path: str) -> int | None:
        if not raced:
            raced.append(path)
            os.utime(path, (0, 0))
            snaps.sweep(set(), set())
        return real_hold(path)

    monkeypatch.setattr(stubs, "hold", sweep_first)
    try:
        with snaps.held_stub(DIRS, FILES) as path:
            assert raced == [path]
            snaps.sweep(set(), set())  # the one made again is held: it stays
            assert stubs.is_whole(path, stubs.stub_tree(DIRS, FILES))
    finally:
        snaps.close()
