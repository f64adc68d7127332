"""Mount points a test left, read straight from ``/proc/self/mountinfo``.

    assert mount_points_under(tmp_path / "root") == []
    unmount_under(tmp_path)  # a fixture's teardown: what a failed test left mounted
    with tmpfs(tmp_path / "small", "256k") as small: ...  # a small disk for the block (root)

Not with kiln's own reader (``kiln.snapshot.mount.mounts_under``): the tests check what
kiln's sweeps and unmounts did, so they must not share its parsing. A point counts when it
is a path or below it (``/x/ab`` is not under ``/x/a``); escapes (``\\040`` for a space)
are decoded.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _decode(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points_under(*paths: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below any of ``paths``, in mountinfo's order."""
    bases = [os.path.realpath(p).rstrip("/") or "/" for p in paths]
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [_decode(line.split(" ")[4]) for line in f]
    return [p for p in points if any(p == b or p.startswith(b + "/") for b in bases)]


def unmount_under(path: str | os.PathLike[str]) -> list[str]:
    """Unmount every mount point at or below ``path`` (a test's own tmp_path), deepest
    first, lazily (detached) where one is still busy; never one outside ``path``. What a
    killed kiln left mounted when its test failed before the sweep it tests, so that it
    does not stay mounted on the machine after the test. Returns the points it unmounted."""
    points = mount_points_under(path)
    for point in reversed(points):  # mountinfo lists a mount after the one it is on
        for flags in ([], ["-l"]):
            done = subprocess.run(["umount", *flags, point], capture_output=True, timeout=30,
                                  check=False)  # fmt: skip
            if done.returncode == 0 or point not in mount_points_under(point):
                break
    return points


@contextlib.contextmanager
def tmpfs(path: str | os.PathLike[str], size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's form: ``30m``, ``256k``) at ``path``, made if missing, for
    the block: a small disk that fills up. Unmounted after it, lazily if still busy."""
    Path(path).mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True, timeout=30)  # fmt: skip
    try:
        yield Path(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30, check=False)
