"""``Snapshotter.stub_layer``: the empty mountpoints a run's overlay shows from beneath the
image's layers, made once per set of names, whole, with fixed modes whatever the umask."""

from __future__ import annotations

import os
import stat

from kiln.snapshot import Snapshotter


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
