"""Two-tree change lists and the copy-based snapshot diff (scan_changes)."""

from __future__ import annotations

import io
import os
import subprocess

from kiln.archive.applier import apply_layer
from kiln.archive.changes import Change, diff_trees
from kiln.archive.tar_writer import scan_changes, write_layer


def base(root) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "a").write_text("aaaa")
    (root / "etc" / "b").write_text("bbbb")
    (root / "gone" / "x").mkdir(parents=True)
    (root / "gone" / "x" / "y").write_text("y")
    (root / "same").write_text("same")
    os.symlink("/etc/a", root / "link")


def whole_seconds(root) -> None:
    """Layers keep whole-second mtimes; make the trees comparable after a round trip."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ["."]:
            path = os.path.join(dirpath, name)
            sec = os.lstat(path).st_mtime_ns // 10**9 * 10**9
            os.utime(path, ns=(sec, sec), follow_symlinks=False)


def make_pair(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    base(old)
    whole_seconds(old)
    subprocess.run(["cp", "-a", str(old), str(new)], check=True)
    st = os.stat(new / "etc" / "b")
    (new / "etc" / "b").write_text("BBBB")  # same size...
    os.utime(new / "etc" / "b", ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and same mtime
    (new / "etc" / "new").write_text("n")
    subprocess.run(["rm", "-rf", str(new / "gone")], check=True)
    os.chmod(new / "same", 0o600)
    whole_seconds(new)
    return old, new


def test_diff_trees(tmp_path):
    old, new = make_pair(tmp_path)
    assert diff_trees(str(old), str(new)) == [
        Change("C", "/etc"),
        Change("C", "/etc/b"),
        Change("A", "/etc/new"),
        Change("D", "/gone"),
        Change("C", "/same"),
    ]


def test_diff_from_nothing(tmp_path):
    base(tmp_path)
    changes = diff_trees(None, str(tmp_path))
    assert {c.kind for c in changes} == {"A"}
    assert [c.path for c in changes] == sorted(c.path for c in changes)
    assert Change("A", "/gone/x/y") in changes


def test_scan_changes_applies_to_the_new_tree(tmp_path):
    old, new = make_pair(tmp_path)
    entries = list(scan_changes(str(old), str(new)))
    assert ("whiteout", "gone") in {(e.type, e.path) for e in entries}
    blob = io.BytesIO()
    write_layer(entries, blob)
    blob.seek(0)
    target = tmp_path / "target"
    subprocess.run(["cp", "-a", str(old), str(target)], check=True)
    apply_layer(blob, str(target), whiteouts="delete")
    assert diff_trees(str(new), str(target)) == []
