"""The streamed tree scans (one directory per level in memory) keep the canonical order."""

from __future__ import annotations

import os

from kiln.archive.scan import scan_tree
from kiln.archive.tar_writer import sorted_entries


def test_streamed_scan_is_in_canonical_order(tmp_path):
    """scan_tree walks lazily (one directory per level in memory) and still yields the
    bytewise order of member names, which is not a depth-first order."""
    names = ["a/b", "a/b.c/d", "a.txt", "a-", "a0", "a/z", "b/\u00e9", "b/e", "ab/x", "a/ ", "A"]
    for name in names:
        path = tmp_path / "t" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    os.link(tmp_path / "t" / "a/z", tmp_path / "t" / "ab/hard")
    entries = list(scan_tree(str(tmp_path / "t")))
    assert [e.path for e in entries] == [e.path for e in sorted_entries(entries)]
    assert entries[0].path == "A" and {"a", "a/b.c", "b", "ab"} <= {e.path for e in entries}
    links = [e for e in entries if e.type == "hardlink"]
    assert [(e.path, e.linkname) for e in links] == [("ab/hard", "a/z")]
