"""How kiln reads mount points out of /proc/self/mountinfo (``kiln.snapshot.mount``)."""

from __future__ import annotations

from kiln.snapshot.mount import _unescape


def test_mountinfo_paths_are_decoded():
    # the kernel writes space, tab, newline and backslash in a mount point as \ooo
    assert _unescape("/var/lib/kiln/a\\040b") == "/var/lib/kiln/a b"
    assert _unescape("/x\\011y\\012z\\134w") == "/x\ty\nz\\w"
    # a backslash not followed by three digits is kept as it is
    assert _unescape("/odd\\x") == "/odd\\x"


def test_mountinfo_plain_paths_come_back_unchanged():
    path = "/var/lib/kiln/snapshots/active/12/merged"
    assert _unescape(path) == path
    assert _unescape("") == ""
