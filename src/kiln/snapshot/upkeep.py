"""Checking the snapshotter's root and removing what crashes left in it (``kiln system check``).

Leftovers, each safe to remove at once (no grace period):

- an active snapshot nobody holds (``holds``) and no working container names: its creator
  was killed between ``prepare`` and writing the container's row (or before removing a
  view). A live process always holds the snapshots it created, from before the row is
  visible until it removes or commits them, and a working container of the store names
  its own; the caller reads the holds first and the containers' keys after, so a snapshot
  whose container row appears meanwhile is never taken for an orphan.
- directories under ``layers/`` and ``active/`` no row names, and everything in ``tmp/``
  (work a killed unpack, prepare or remove left) when no unpack, prepare or commit is
  running (their shared lock is free; an overlay probe or a removal under a minute old is
  left alone), with whatever is still mounted below them. An entry of ``tmp/`` seen while
  that lock was free is nobody's for good (each is made and used under the lock, under a
  name never used again), so it is removed without waiting for the lock: the commands
  that sweep leftovers (``kiln.ops.context.sweep_leftovers``) clear ``tmp/`` whenever
  nothing runs, not only ``kiln system check``.

Unpacked layers are verified against their layer tars (``kiln.snapshot.verify``); one that
does not match is removed with the layers above it, so that the next use unpacks it again,
unless an active snapshot rests on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import field
from typing import TYPE_CHECKING

from kiln.archive.streams import ByteReader
from kiln.snapshot import holds
from kiln.snapshot import mount as mnt
from kiln.snapshot.usage import tree_size
from kiln.util.held_signals import opened
from kiln.util.lazy_dataclass import dataclass
from kiln.util.locks import file_lock, try_lock

if TYPE_CHECKING:
    from kiln.snapshot.verify import LayerVerdict
    from kiln.util.sqlite import Database

_YOUNG = 60.0


@dataclass
class Leftovers:
    """What a sweep found left behind by processes that died."""

    orphans: list[str] = field(default_factory=list)  # active snapshot keys
    unrecorded: list[str] = field(default_factory=list)  # directories no row names
    scratch: list[str] = field(default_factory=list)  # entries of tmp/
    mounts: list[str] = field(default_factory=list)  # mounted below any of those
    bytes: int = 0


@dataclass(frozen=True)
class LayerRow:
    """One row of the layers table."""

    chain_id: str
    parent: str | None
    diff_id: str
    flat: bool
    path: str  # the layer's fs directory


class UpkeepMixin:
    root: str
    db: Database
    _dir: Callable[[str, int], str]
    _list: Callable[[str], list[str]]
    _move_aside: Callable[[str], str | None]
    remove: Callable[[str], None]

    def unheld_active(self) -> list[str]:
        """Keys of the active snapshots no process holds (read before the containers' keys:
        see the module)."""
        rows = self.db.query("SELECT key, n FROM active ORDER BY n")
        return [r["key"] for r in rows if not holds.in_use(self._dir("active", r["n"]))]

    def leftovers(
        self, unheld: Collection[str], named: Collection[str], deep: bool = True
    ) -> Leftovers:
        """What crashes left: ``unheld`` (from ``unheld_active``) minus the keys working
        containers name (``named``), and ``tmp/`` entries when no unpack, prepare or commit
        runs; with ``deep``, also unrecorded directories (their removal waits for the
        exclusive lock)."""
        out = Leftovers()
        active = {r["key"]: r["n"] for r in self.db.query("SELECT key, n FROM active")}
        out.orphans = [k for k in unheld if k in active and k not in set(named)]
        if not deep:
            with self._quiet() as quiet:
                if quiet:
                    self._list_tmp_garbage(out)
            dirs = [self._dir("active", active[k]) for k in out.orphans] + out.scratch
            out.mounts = [m for d in dirs for m in mnt.mounts_under(d)]
            out.bytes = sum(tree_size(d) for d in dirs)
            return out
        # only while no unpack, prepare or commit runs (each holds the root lock shared and
        # renames its work into place before its row commits): held for the listing
        with self._quiet() as quiet:
            if quiet:
                self._list_crash_garbage(out)
        dirs = [self._dir("active", active[k]) for k in out.orphans]
        dirs += out.unrecorded + out.scratch
        for d in dirs:
            out.mounts += mnt.mounts_under(d)
        out.bytes = sum(tree_size(d) for d in dirs)
        return out

    def remove_leftovers(self, found: Leftovers) -> Leftovers:
        """Remove what ``leftovers`` found (checked again under the lock); returns what went."""
        done = Leftovers()
        for key in found.orphans:
            row = self.db.one("SELECT n FROM active WHERE key=?", (key,))
            if row is None or holds.in_use(self._dir("active", row["n"])):
                continue
            path = self._dir("active", row["n"])
            size = tree_size(path)
            done.mounts += mnt.unmount_all_under(path)
            self.remove(key)
            done.orphans.append(key)
            done.bytes += size
        for d in found.scratch:  # seen while nothing ran: nobody's (see the module)
            if not os.path.lexists(d):
                continue
            size = tree_size(d)
            done.mounts += mnt.unmount_all_under(d)
            shutil.rmtree(d, ignore_errors=True)
            done.scratch.append(d)
            done.bytes += size
        if not found.unrecorded:
            return done
        with file_lock(os.path.join(self.root, "snapshots.lock"), exclusive=True):
            live = {
                os.path.join(self.root, "layers", str(r["n"]))
                for r in self.db.query("SELECT n FROM layers")
            } | {os.path.join(self.root, "active", str(r["n"])) for r in self.db.query(
                "SELECT n FROM active")}  # fmt: skip
            for d in [d for d in found.unrecorded if d not in live]:
                size = tree_size(d)
                done.mounts += mnt.unmount_all_under(d)
                aside = self._move_aside(d)
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
                done.unrecorded.append(d)
                done.bytes += size
        return done

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[bool]:
        """The root lock exclusively if nobody holds it now (True), else nothing (False)."""
        lock = os.path.join(self.root, "snapshots.lock")
        with opened(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) as fd:
            yield try_lock(fd)

    def _list_crash_garbage(self, out: Leftovers) -> None:
        live_layers = {str(r["n"]) for r in self.db.query("SELECT n FROM layers")}
        live_active = {str(r["n"]) for r in self.db.query("SELECT n FROM active")}
        for sub, live in (("layers", live_layers), ("active", live_active)):
            out.unrecorded += [os.path.join(self.root, sub, n) for n in self._list(sub)
                               if n not in live]  # fmt: skip
        self._list_tmp_garbage(out)

    def _list_tmp_garbage(self, out: Leftovers) -> None:
        """``tmp/``'s entries (called with the root lock held exclusively)."""
        now = time.time()
        for name in sorted(self._list("tmp")):
            path = os.path.join(self.root, "tmp", name)
            # a probe and a removal's holder work outside the lock, for milliseconds
            if name.startswith(("probe-", "rm-")) and _age(path, now) < _YOUNG:
                continue
            out.scratch.append(path)

    # layers ---------------------------------------------------------------------------

    def layer_rows(self) -> list[LayerRow]:
        rows = self.db.query("SELECT n, chain_id, parent, diff_id, flat FROM layers ORDER BY n")
        return [
            LayerRow(
                r["chain_id"],
                r["parent"],
                r["diff_id"],
                bool(r["flat"]),
                os.path.join(self.root, "layers", str(r["n"]), "fs"),
            )  # fmt: skip
            for r in rows
        ]

    def verify_layer(self, row: LayerRow, tar_stream: ByteReader) -> LayerVerdict:
        """Compare layer ``row``'s directory with its (uncompressed) layer tar."""
        # start-up: verification only for kiln system check
        from kiln.snapshot.verify import LayerVerdict, verify_layer_dir

        if not os.path.isdir(row.path):
            return LayerVerdict("", [f"its directory {row.path} is missing"])
        return verify_layer_dir(row.path, tar_stream)

    def layers_above(self, chain_id: str) -> list[str]:
        """``chain_id`` and every unpacked layer resting on it, top first (removal order)."""
        children: dict[str, list[str]] = {}
        for r in self.db.query("SELECT chain_id, parent FROM layers WHERE flat=0"):
            if r["parent"]:
                children.setdefault(r["parent"], []).append(r["chain_id"])
        order, todo = [], [chain_id]
        while todo:
            current = todo.pop()
            order.append(current)
            todo += children.get(current, [])
        return list(reversed(order))

    def active_on(self, chain_ids: Collection[str]) -> list[str]:
        """Keys of the active snapshots resting on any of ``chain_ids``."""
        wanted = set(chain_ids)
        return [r["key"] for r in self.db.query("SELECT key, parent FROM active")
                if r["parent"] in wanted]  # fmt: skip


def _age(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return _YOUNG
