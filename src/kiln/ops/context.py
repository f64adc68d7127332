"""The wiring every use case receives: store, snapshotter, config, event sink.

``with open_context(root) as ctx:`` opens the store once; the snapshotter is
created on first use (listing images never touches it). Use cases take the
context as their first argument and never open stores themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import field
from typing import TYPE_CHECKING, Any

from kiln.errors import Cancelled, KilnError
from kiln.ops.config import Config
from kiln.ops.events import Emitter, EventSink, NullSink, StoppingSink
from kiln.store import Store
from kiln.store.paths import default_root
from kiln.util.atomic import run_together
from kiln.util.held_signals import signals_held
from kiln.util.lazy_dataclass import dataclass
from kiln.util.scratch import make_scratch_dir

if TYPE_CHECKING:
    from kiln.snapshot import Snapshotter
    from kiln.store import Store
    from kiln.store.records import GCResult


@dataclass
class Context:
    """What a use case works with. Open one with ``with open_context(...) as ctx:``, or
    call ``close()`` when done with one made directly: that removes its scratch directory
    and closes its databases. A context dropped without ``close()`` still removes its
    scratch directory when it is garbage-collected or the process exits (a finalizer
    set when the directory is made); its store closes with the store object."""

    store: Store
    events: EventSink = field(default_factory=NullSink)
    config: Config = field(default_factory=Config)
    _snapshots: Any = field(default=None, repr=False)
    _snapshots_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: the store outlives this context (a server thread keeps it open): close() leaves it open
    borrowed_store: bool = False
    _scratch: str | None = field(default=None, repr=False)
    _scratch_finalizer: weakref.finalize | None = field(default=None, repr=False)
    _swept: bool = field(default=False, repr=False)
    #: the context a copy (``stopped_by``) uses the snapshotter and scratch directory of
    _lender: Context | None = field(default=None, repr=False)

    @property
    def snapshots(self) -> Snapshotter:
        """The snapshotter under ``<root>/snapshots``, created once, on first use
        (parallel build stages share it)."""
        if self._lender is not None:
            return self._lender.snapshots
        with self._snapshots_lock:
            if self._snapshots is None:
                from kiln.snapshot import Snapshotter  # start-up: reads need no snapshots

                self._snapshots = Snapshotter(self.store.snapshot_root)
            return self._snapshots

    def collect_garbage(self, dry_run: bool = False) -> GCResult:
        """One collection over the whole root: the store's GC marks from names, working
        containers, leases and retained build cache and sweeps blobs, and the snapshotter
        (its sweeper: store and snapshot never import each other, they meet here) sweeps
        the unpacked layers and snapshots nothing holds. Reports what left the disk.
        What killed kiln processes left goes first (their leases no longer hold images)."""
        if not dry_run:
            sweep_leftovers(self)
        return self.store.gc(dry_run=dry_run, sweepers=[self.snapshots])

    def stopped_by(
        self, cancel: threading.Event | None, message: str, kinds: Collection[str] | None = None
    ) -> Context:
        """This context, for one call that ``cancel`` (set from any thread) stops: at the
        call's next event of ``kinds`` (None: any) it raises ``Cancelled(message)`` (at
        once if it is set already; see ``StoppingSink``). The copy uses this one's store,
        snapshotter and scratch directory; this one makes and closes them."""
        if cancel is None:
            return self
        if cancel.is_set():
            raise Cancelled(message)
        return dataclasses.replace(
            self,
            events=StoppingSink(self.events, cancel, message, kinds),
            borrowed_store=True,
            _snapshots=None,
            _snapshots_lock=threading.Lock(),
            _scratch=None,
            _scratch_finalizer=None,
            _lender=self._lender or self,
        )

    @property
    def ev(self) -> Emitter:
        return Emitter(self.events)

    @property
    def tmpdir(self) -> str:
        """This context's own scratch directory (``kiln.util.scratch``), made on first use
        under the configured scratch space and removed by ``close``; one a killed kiln
        left is removed by the next ``sweep_leftovers``; one a context dropped unclosed
        left goes when it is collected or the process exits."""
        if self._lender is not None:
            return self._lender.tmpdir
        if self._scratch is None:
            with signals_held():  # a Ctrl-C between the two left a directory nobody knew
                self._scratch = make_scratch_dir(self.config.scratch_dir())
                self._scratch_finalizer = weakref.finalize(
                    self, _remove_scratch, self._scratch, os.getpid()
                )
        return self._scratch

    def close(self) -> None:
        """Remove the scratch dir and close both databases, at the same time: closing a
        database makes the command's commits durable (a checkpoint of its WAL into it, or,
        in the console script, a sync of the WAL: ``kiln.util.sqlite``), and the syncs and
        the removal overlap (10-60 ms at the end of every command on a busy disk, one after
        another). A Ctrl-C or SIGTERM meanwhile waits until it is done (one in its first
        lines left the scratch directory behind, the closes undone)."""
        with signals_held():
            self._close()

    def _close(self) -> None:
        scratch, self._scratch = self._scratch, None
        if self._scratch_finalizer is not None:
            self._scratch_finalizer.detach()
            self._scratch_finalizer = None
        snaps, self._snapshots = self._snapshots, None
        jobs: list[Callable[[], None]] = []
        if scratch is not None:
            jobs.append(functools.partial(_remove_scratch, scratch, os.getpid()))
        close = getattr(snaps, "close", None)
        if close is not None:
            jobs.append(close)
        if not self.borrowed_store:
            jobs.append(self.store.close)
        run_together(jobs)


@contextmanager
def open_context(
    root: str | None = None,
    events: EventSink | None = None,
    config: Config | None = None,
) -> Iterator[Context]:
    """Open the store at ``root`` (or the configured/default root) for one operation."""

    config = config or Config.from_env()
    store = Store.open(root if root is not None else config.root)
    ctx = Context(store=store, events=events or NullSink(), config=config)
    try:
        yield ctx
    finally:
        ctx.close()


def store_root(root: str | None = None) -> str:
    """The directory a context opens: ``root`` (made absolute), else the default
    (``$KILN_ROOT``, ``/var/lib/kiln`` for root, ``$XDG_DATA_HOME/kiln`` for a user)."""
    return os.path.abspath(root) if root else default_root()


_thread_store = threading.local()


def thread_context(config: Config, events: EventSink | None = None) -> Context:
    """A context on this thread's own long-lived store for ``config.root``: opened on
    first use and kept for the thread's next calls (a server's worker threads answer many
    short requests, and opening a store costs more than an inspect); reopened when the
    root changes. The context's ``close`` leaves the store open; it goes with the thread."""
    held = getattr(_thread_store, "held", None)
    if held is None or held[0] != config.root:
        if held is not None:
            held[1].close()
        _thread_store.held = held = (config.root, Store.open(config.root))
    return Context(store=held[1], events=events or NullSink(), config=config, borrowed_store=True)


def open_store(config: Config) -> Store:
    """The store at ``config.root``, for a holder that keeps it open for its whole life (a
    server's reads) and closes it itself."""
    return Store.open(config.root)


LOOP_MMAP_BYTES = 256 << 20


def for_event_loop(store: Store) -> None:
    """Set up this thread's connection to ``store`` for a thread that must never stall, a
    server's event loop: its statements fail at once as busy (``kiln.util.sqlite.is_busy``)
    when another connection holds a lock they need, instead of waiting up to a minute (the
    loop hands that work to a thread that may wait); and it reads the database through a
    memory mapping (its random reads of one image's rows missed SQLite's small page cache
    and cost a ``pread`` a page, six a request)."""
    store.db.set_busy_timeout(0)
    store.db.set_mmap_size(LOOP_MMAP_BYTES)


def _remove_scratch(path: str, pid: int) -> None:
    """Remove scratch directory ``path`` of process ``pid`` (nothing in a forked child,
    whose exit must not take its parent's directory)."""
    if os.getpid() != pid:
        return
    try:  # the common case, a build that needed no scratch space: one rmdir
        os.rmdir(path)  # fails on a directory with files, or a mount point, in it or at it
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    from kiln.snapshot.mount import unmount_all_under  # start-up, as above

    try:
        unmount_all_under(path)  # never delete into a view still mounted there
    except (KilnError, OSError):
        return
    shutil.rmtree(path, ignore_errors=True)


def sweep_leftovers(ctx: Context) -> None:
    """Stop and remove what killed kiln processes left (``kiln.ops.leftovers``): RUN
    containers still running under runc and their bundles, builds' working containers,
    scratch directories, orphan snapshots, stale leases; only what a dead process left is
    touched, never the running command's own. Run once per context by the use cases that
    build, run, prune or check, and before every GC: a command that only reads the store
    does not pay for it."""
    from kiln.ops.leftovers import find_leftovers, remove_leftovers  # start-up, as above
    from kiln.store.ingest import remove_dead_writers

    if ctx._swept:
        return
    ctx._swept = True
    try:
        remove_dead_writers(ctx.store.root)  # unfinished blobs: housekeeping, no word
        found = find_leftovers(ctx)
        if not found.count():
            return
        done = remove_leftovers(ctx, found)
    except (KilnError, OSError):
        return
    orphans = len(done.snapshots.orphans) if done.snapshots is not None else 0
    # what this store's work left is worth a word; a dead command's lease (every killed
    # command has one) and scratch directories in the shared temporary directory (perhaps
    # another store's) are housekeeping, removed without one
    if done.runs or done.builds or orphans:
        counts = (
            (len(done.runs), "running RUN container(s)"),
            (len(done.builds), "build working container(s)"),
            (len(done.scratch_dirs), "scratch dir(s)"),
            (orphans, "orphan snapshot(s)"),
            (len(done.leases), "lease(s)"),
        )
        said = ", ".join(f"{n} {what}" for n, what in counts if n)
        ctx.ev.warning(f"removed what a killed kiln left behind: {said}")


__all__ = [
    "Context",
    "for_event_loop",
    "open_context",
    "open_store",
    "store_root",
    "sweep_leftovers",
    "thread_context",
]
