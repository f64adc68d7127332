"""Mount points a test left, read straight from ``/proc/self/mountinfo``.

    assert mount_points_under(tmp_path / "root") == []

Not with kiln's own reader (``kiln.snapshot.mount.mounts_under``): the tests check what
kiln's sweeps and unmounts did, so they must not share its parsing. A point counts when it
is a path or below it (``/x/ab`` is not under ``/x/a``); escapes (``\\040`` for a space)
are decoded.
"""

from __future__ import annotations

import os
import re


def _decode(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points_under(*paths: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below any of ``paths``, in mountinfo's order."""
    bases = [os.path.realpath(p).rstrip("/") or "/" for p in paths]
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [_decode(line.split(" ")[4]) for line in f]
    return [p for p in points if any(p == b or p.startswith(b + "/") for b in bases)]
