"""The wiring every use case receives: store, snapshotter, config, event sink.

``with open_context(root) as ctx:`` opens the store once; the snapshotter is
created on first use (listing images never touches it). Use cases take the
context as their first argument and never open stores themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiln.ops.config import Config
from kiln.ops.events import Emitter, EventSink, NullSink

if TYPE_CHECKING:
    from kiln.snapshot import Snapshotter
    from kiln.store import Store
    from kiln.store.records import GCResult


@dataclass
class Context:
    store: Store
    events: EventSink = field(default_factory=NullSink)
    config: Config = field(default_factory=Config)
    _snapshots: Any = field(default=None, repr=False)
    _snapshots_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: the store outlives this context (a server thread keeps it open): close() leaves it open
    borrowed_store: bool = False

    @property
    def snapshots(self) -> Snapshotter:
        """The snapshotter under ``<root>/snapshots``, created once, on first use
        (parallel build stages share it)."""
        with self._snapshots_lock:
            if self._snapshots is None:
                from kiln.snapshot import Snapshotter

                self._snapshots = Snapshotter(self.store.snapshot_root)
            return self._snapshots

    def collect_garbage(self, dry_run: bool = False) -> GCResult:
        """One collection over the whole root: the store's GC marks from names, working
        containers, leases and retained build cache and sweeps blobs, and the snapshotter
        (its sweeper: store and snapshot never import each other, they meet here) sweeps
        the unpacked layers and snapshots nothing holds. Reports what left the disk."""
        return self.store.gc(dry_run=dry_run, sweepers=[self.snapshots])

    @property
    def ev(self) -> Emitter:
        return Emitter(self.events)

    @property
    def tmpdir(self) -> str:
        return self.config.scratch_dir()

    def close(self) -> None:
        snaps, self._snapshots = self._snapshots, None
        close = getattr(snaps, "close", None)
        if close is not None:
            close()
        if not self.borrowed_store:
            self.store.close()


@contextmanager
def open_context(
    root: str | None = None,
    events: EventSink | None = None,
    config: Config | None = None,
) -> Iterator[Context]:
    """Open the store at ``root`` (or the configured/default root) for one operation."""
    from kiln.store import Store

    config = config or Config.from_env()
    store = Store.open(root if root is not None else config.root)
    ctx = Context(store=store, events=events or NullSink(), config=config)
    try:
        sweep_leftovers(ctx)
        yield ctx
    finally:
        ctx.close()


def sweep_leftovers(ctx: Context) -> None:
    """Stop and remove what a killed kiln left: RUN containers still running under runc,
    their bundles, and its builds' working containers (each names its owner process; only
    a dead owner's are touched). Never stops the command that runs it."""
    from kiln.container.leftovers import sweep_dead_builds
    from kiln.errors import KilnError
    from kiln.runtime.leftovers import sweep_dead_runs

    try:
        runs = sweep_dead_runs()
        builds = sweep_dead_builds(ctx.store, lambda: ctx.snapshots)
        leases = ctx.store.clear_dead_leases()
    except (KilnError, OSError):
        return
    if runs or builds:  # a lease alone is not worth a word (every killed command has one)
        ctx.ev.warning(
            f"removed what a killed kiln left behind: {len(runs)} running RUN container(s), "
            f"{len(builds)} build working container(s), {leases} lease(s)"
        )


__all__ = ["Context", "open_context", "sweep_leftovers"]
