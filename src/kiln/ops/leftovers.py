"""What killed kiln processes left behind, found and removed in one place.

Each kind names its owner process, or is held by it while it lives, so only what a dead
process left is ever touched (never the running command's own, never another live
kiln's):

- RUN containers still running under runc, and their bundles (``runtime.leftovers``): only
  this store's (their root filesystem is one of its snapshots), as the runtime directory is
  shared by every store; another store's wait for that store's next command;
- working containers of builds (``container.leftovers``), with their snapshots and mounts;
- scratch directories (``util.scratch``): remote and named build contexts, RUN scripts,
  mounted image views, with anything still mounted in them;
- active snapshots nobody holds and no container names (``snapshot.upkeep``);
- leases of dead processes, and expired ones.

``sweep_leftovers`` (``kiln.ops.context``) removes these at the start of the commands that
build, run, prune or check, and before every GC; ``kiln system check`` also looks deeper
(``deep``: unrecorded snapshot directories and the snapshotter's ``tmp/``, which need its
exclusive lock).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import field
from typing import TYPE_CHECKING, Any, Protocol

from kiln.container.leftovers import sweep_dead_builds
from kiln.errors import KilnError
from kiln.runtime.leftovers import sweep_dead_runs
from kiln.snapshot.mount import mounts_under, unmount_all_under
from kiln.snapshot.usage import tree_size
from kiln.util.lazy_dataclass import dataclass
from kiln.util.scratch import dead_scratch_dirs, system_tmpdir

if TYPE_CHECKING:
    from kiln.ops.config import Config
    from kiln.snapshot import Snapshotter
    from kiln.store import Store
    from kiln.store.leases import LeaseInfo


class Context(Protocol):
    """What this module takes from ``kiln.ops.context.Context`` (which calls it)."""

    store: Store
    config: Config

    @property
    def snapshots(self) -> Snapshotter: ...


__all__ = ["Leftovers", "find_leftovers", "remove_leftovers"]


@dataclass
class Leftovers:
    """What killed kiln processes left behind, found by ``find_leftovers``."""

    runs: list[str] = field(default_factory=list)  # RUN ids (bundles)
    builds: list[str] = field(default_factory=list)  # working container ids
    leases: list[LeaseInfo] = field(default_factory=list)
    scratch_dirs: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)  # mounted inside leftovers
    snapshots: Any = None  # kiln.snapshot.upkeep.Leftovers
    bytes: int = 0  # scratch and snapshot bytes

    def count(self) -> int:
        snaps = self.snapshots
        extra = (len(snaps.orphans) + len(snaps.unrecorded) + len(snaps.scratch)) if snaps else 0
        return len(self.runs) + len(self.builds) + len(self.leases) + len(self.scratch_dirs) + extra


def find_leftovers(ctx: Context, deep: bool = False) -> Leftovers:
    found = Leftovers()
    found.runs = sweep_dead_runs(dry_run=True, store_root=ctx.store.root)
    found.builds = sweep_dead_builds(ctx.store, lambda: ctx.snapshots, dry_run=True)
    found.leases = [lease for lease in ctx.store.list_leases() if lease.stale]
    found.scratch_dirs = [d for base in _scratch_bases(ctx) for d in dead_scratch_dirs(base)]
    for d in found.scratch_dirs:
        found.mounts += mounts_under(d)
        found.bytes += tree_size(d)
    snaps = ctx.snapshots
    unheld = snaps.unheld_active()  # before the containers' keys (kiln.snapshot.upkeep)
    named = {c.snapshot_key for c in ctx.store.list_containers() if c.snapshot_key}
    found.snapshots = snaps.leftovers(unheld, named, deep=deep)
    found.mounts += found.snapshots.mounts
    found.bytes += found.snapshots.bytes
    return found


def remove_leftovers(ctx: Context, found: Leftovers) -> Leftovers:
    """Remove what ``find_leftovers`` found; returns what was removed (bytes: freed)."""

    done = Leftovers()
    if found.runs:  # stops them first: their mounts are free after
        done.runs = sweep_dead_runs(store_root=ctx.store.root)
    if found.builds:
        done.builds = sweep_dead_builds(ctx.store, lambda: ctx.snapshots)
    still_dead = {d for base in _scratch_bases(ctx) for d in dead_scratch_dirs(base)}
    for d in found.scratch_dirs:
        if d not in still_dead:
            continue
        size = tree_size(d)
        with contextlib.suppress(KilnError, OSError):
            done.mounts += unmount_all_under(d)
            shutil.rmtree(d)
            done.scratch_dirs.append(d)
            done.bytes += size
    if found.snapshots is not None:
        snaps = ctx.snapshots.remove_leftovers(found.snapshots)
        done.snapshots = snaps
        done.mounts += snaps.mounts
        done.bytes += snaps.bytes
    if found.leases:
        stale = {lease.id for lease in ctx.store.list_leases() if lease.stale}
        gone = [lease for lease in found.leases if lease.id in stale]
        ctx.store.delete_leases([lease.id for lease in gone])
        done.leases = gone
    return done


def _scratch_bases(ctx: Context) -> list[str]:
    """Where scratch directories are made: the configured scratch space, and the system's
    temporary directory (``util.scratch.process_scratch_dir``)."""
    import os

    bases = [os.path.abspath(ctx.config.scratch_dir()), os.path.abspath(system_tmpdir())]
    return list(dict.fromkeys(bases))
