"""A Ctrl-C at any line of a snapshotter call leaves the snapshotter consistent.

Each call is run once per line of kiln code it runs, with a real SIGINT sent at that line
(``ctrl_c_anywhere``). After each trial, whether the call finished or raised
``KeyboardInterrupt``: every directory under ``active/`` and ``layers/`` has its row and
every row its directory, ``tmp/`` is empty once the background deletions are done,
nothing is mounted, no descriptor the trial opened is open once its snapshots are removed
(nor was closed only by a garbage collection), and the call works again. (A build
interrupted by SIGINT 0.2 s in left ``active/N`` with no row: the snapshot's directory was renamed into place inside the
transaction that a Ctrl-C then rolled back.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from ctrl_c_anywhere import assert_whole_at_every_point
from kiln.snapshot import Snapshotter, mount
from snapshot_layers import disagreements, unpack

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(params=["overlay", "copy"])
def snaps(request, tmp_path) -> Iterator[Snapshotter]:
    s = Snapshotter(str(tmp_path / "snapshots"), driver=request.param)
    if request.param == "overlay" and not mount.overlay_works(str(tmp_path)):
        pytest.skip("overlayfs cannot be mounted here")
    s.grace_seconds = 0
    unpack(s, "base", None, {"etc": None, "etc/os": b"base\n"})
    yield s
    s.close()


def left_behind(s: Snapshotter) -> list[str]:
    """What does not add up in the snapshotter's directories and rows, and its mounts."""
    return disagreements(s) + [f"mounted: {m}" for m in mount.mounts_under(s.root)]


def reset(s: Snapshotter) -> None:
    """Back to the base layer alone, through the snapshotter's own calls."""
    for key in s.list_active():
        s.remove(key)
    for chain in ("c2", "c1"):
        if s.has_layer(chain):
            s.remove_layer(chain)
    s.settle()


def _prepared(s: Snapshotter, key: str = "k") -> None:
    s.prepare(key, "base")
    with open(os.path.join(s.upper_dir(key), "new"), "w") as f:
        f.write("new\n")


# name -> (set-up, call): the call is what the trials interrupt
CALLS: dict[str, tuple[Callable[[Snapshotter], object], Callable[[Snapshotter], object]]] = {
    "prepare": (lambda s: None, lambda s: s.prepare("k", "base")),
    "view": (lambda s: None, lambda s: s.view("k", "base")),
    "remove": (_prepared, lambda s: s.remove("k")),
    "commit": (_prepared, lambda s: s.commit("k", "c1", "base")),
    "commit-and-go-on": (_prepared, lambda s: s.commit("k", "c1", "base", next_key="k2")),
    "commit-existing": (
        lambda s: (_prepared(s), unpack(s, "c1", "base", {"new": b"new\n"})),
        lambda s: s.commit("k", "c1", "base"),
    ),
    "unpack": (lambda s: None, lambda s: unpack(s, "c1", "base", {"x": b"x" * 100_000})),
    "remove-layer": (
        lambda s: unpack(s, "c1", "base", {"x": b"x"}),
        lambda s: s.remove_layer("c1"),
    ),
    "recycle-work": (_prepared, lambda s: s.recycle_work("k")),
    "mount-point": (lambda s: s.prepare("k", "base"), lambda s: s.mount_point("k")),
    "gc": (_prepared, lambda s: s.gc(keep_layers={"base"}, keep_active=set())),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_ctrl_c_at_any_point_leaves_the_snapshotter_consistent(snaps: Snapshotter, name) -> None:
    if name == "recycle-work" and snaps.driver == "copy":
        pytest.skip("the copy driver has no overlay work directory to recycle")
    set_up, call = CALLS[name]
    assert_whole_at_every_point(
        lambda: set_up(snaps),
        lambda: call(snaps),
        lambda: reset(snaps),
        lambda: left_behind(snaps),
        lambda: snaps.gc(keep_layers={"base"}, keep_active=set(snaps.list_active())),
        fds=True,
    )
