"""Unpacked layers and active snapshots under one root, described as mounts.

    <root>/layers/<n>/fs         one unpacked layer (overlay format: 0/0 char
                                 whiteouts, trusted.overlay.opaque), chain id in the db
    <root>/active/<n>/upper,work a writable overlay snapshot (driver "overlay")
    <root>/active/<n>/fs         a merged copy (driver "copy")
    <root>/active/<n>/merged     where a caller mounts the snapshot (``mount_point``)
    <root>/empty                 the lower of a snapshot with no parent
    <root>/stubs/<hash>          a RUN's empty mountpoints, under its overlay (``stub_layer``)
    <root>/tmp/                  work in progress; renamed into place when complete
    <root>/locks/                per-chain-id unpack locks
    <root>/snapshots.db          which <n> is which
    <root>/snapshots.lock        shared by every change, exclusive for gc
    <root>/overlay-probe         the cached answer of the overlay probe (see ``driver``)

Every layer and snapshot is built in ``tmp/`` and renamed into place in the
same transaction that records it, so a crash leaves only ``tmp/`` garbage or
unrecorded directories, both of which ``gc`` removes. Unpacked layers, and layers a build
step commits (``commit(synced=False)``: re-derivable from their blobs), are recorded
without waiting for the disk, marked with the boot id; the first open after another boot
(a power loss or kernel crash may have torn them) drops them (``_drop_torn``), with the
views and build containers of that boot. Other committed layers are durable before their
rows. The process that creates an
active snapshot holds it (``holds``) until it removes or commits it; ``sweep``
never removes a held snapshot, however old.

Drivers: "overlay" (the default where overlayfs mounts work) and "copy", for
places without overlayfs (e.g. inside a container): ``prepare`` copies the
whole chain into a plain directory and returns a "bind" MountSpec. It costs
time and disk proportional to the image on every prepare. In copy mode,
``upper_dir`` is that full tree (not a diff: compute changes against the
parent's ``view``), and ``commit`` adopts the full tree as a flat layer whose
``layer_dirs`` is just itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from kiln.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    KilnError,
    NoSpace,
    NotFound,
)
from kiln.snapshot import holds, stubs
from kiln.snapshot import mount as mnt
from kiln.snapshot.meta import boot_id, open_meta
from kiln.snapshot.spec import MountSpec, supported_overlay_options
from kiln.snapshot.upkeep import UpkeepMixin
from kiln.snapshot.usage import tree_size
from kiln.util.atomic import atomic_write, fsync_all, fsync_trees, syncfs
from kiln.util.held_signals import signals_held
from kiln.util.lingering import Job, Lingering
from kiln.util.locks import file_lock
from kiln.util.rootless import in_user_namespace
from kiln.util.spread import spread_subdirectories

if TYPE_CHECKING:
    from kiln.snapshot.staged import StagedLayer

DRIVERS = ("overlay", "copy")
#: rows recorded as not outliving another boot (``_drop_torn``)
_STALE_LAYERS = "SELECT chain_id, n FROM layers WHERE boot != '' AND boot != ?"
_STALE_ACTIVE = "SELECT key, n FROM active WHERE boot != '' AND boot != ?"
_detected: dict[str, str] = {}


class SweepResult(NamedTuple):
    removed: int  # layers and active snapshots
    bytes_freed: int  # apparent size of everything deleted (crash garbage too)


#: seconds the deletion thread waits for more work before it ends (see ``_reap``)
REAPER_IDLE = 2.0


class Snapshotter(UpkeepMixin):
    #: layers and snapshots younger than this are never removed by gc
    grace_seconds: float = 600.0
    #: gc marks layers recorded not yet durable at least this long ago durable (one syncfs:
    #: by then the kernel has written them back, so it finds little of ours to wait for)
    promote_after_seconds: float = 60.0

    def __init__(self, root: str, driver: str | None = None):
        self.root = os.path.abspath(root)
        if driver not in (None, "auto", *DRIVERS):
            raise InvalidArgument(f'unknown snapshot driver "{driver}": use overlay or copy')
        self._driver = None if driver in (None, "auto") else driver
        for sub in ("layers", "active", "tmp", "locks", "empty"):
            os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)
        os.chmod(os.path.join(self.root, "empty"), 0o755)
        # every snapshot and unpacked layer starts as a directory in tmp/: each in a block
        # group of its own choosing, not beside the trees just deleted (kiln.util.spread)
        spread_subdirectories(os.path.join(self.root, "tmp"))
        self.db = open_meta(os.path.join(self.root, "snapshots.db"))
        self.boot = boot_id()
        # background deletions (``recycle_work``, ``remove``): a thread kept while they come
        self._reaper = Lingering("kiln-snapshot-reaper", REAPER_IDLE)
        self._drop_torn()
        self._specs: dict[str, MountSpec] = {}  # active key -> its mounts (see ``mounts``)
        #: the rows of the active snapshots this process made and holds (see ``_active``)
        self._rows: dict[str, Mapping[str, Any] | sqlite3.Row] = {}
        self._merged: set[str] = set()  # mount points made (see ``mount_point``)
        self._probing: Job | None = None  # the overlay probe started early (``probe_ahead``)

    # driver ---------------------------------------------------------------

    @property
    def driver(self) -> str:
        """ "overlay" or "copy": as given, else ``$KILN_SNAPSHOT_DRIVER``, else probed once."""
        if self._driver is None:
            env = os.environ.get("KILN_SNAPSHOT_DRIVER", "")
            if env in DRIVERS:
                self._driver = env
            else:
                if self._probing is not None:  # its answer is in _detected, unless it failed
                    self._probing.wait()
                    self._probing = None
                if self.root not in _detected:
                    _detected[self.root] = self._probed_driver()
                self._driver = _detected[self.root]
        return self._driver

    def probe_ahead(self) -> None:
        """Start the overlay probe on the background thread when ``driver`` would have to
        probe (no driver given, no answer known to this process or in the marker): a fresh
        store's first build then reads its Dockerfile, looks up its base and checks its cache
        while the probe's mount and unmount wait in the kernel (15-40 ms on a busy machine),
        instead of before its first step. ``driver`` waits for the answer."""
        if self._driver is not None or self._probing is not None or self.root in _detected:
            return
        if os.environ.get("KILN_SNAPSHOT_DRIVER", "") in DRIVERS:
            return
        key = self._probe_key()
        cached = self._marked_driver(key)
        if cached is not None:
            _detected[self.root] = cached
            return
        self._probing = self._reaper.submit(self._probe_into_detected, key)

    def _probe_into_detected(self, key: str) -> None:
        _detected[self.root] = self._probe(key)

    def _probed_driver(self) -> str:
        """The probe's answer, cached in ``<root>/overlay-probe`` (a probe mounts, writes and
        unmounts an overlay, and the unmount syncs the file system: ~0.15 s per command).
        The marker names what the answer depends on (kernel, user, file system of the root);
        it is probed again when any of those changes or a real overlay mount fails."""
        key = self._probe_key()
        cached = self._marked_driver(key)
        return cached if cached is not None else self._probe(key)

    def _probe_key(self) -> str:
        """What the probe's answer depends on, as the marker names it."""
        st = os.stat(self.root)
        key = f"{os.uname().release} uid={os.geteuid()} dev={st.st_dev}"
        if in_user_namespace():  # other overlay options, another answer
            key += " userns"
        return key

    def _marked_driver(self, key: str) -> str | None:
        """The marker's answer if it was probed for ``key``."""
        try:
            with open(self._probe_marker, encoding="utf-8") as f:
                cached_key, _, cached = f.read().strip().rpartition(" driver=")
            if cached_key == key and cached in DRIVERS:
                return cached
        except (OSError, UnicodeDecodeError):
            pass
        return None

    def _probe(self, key: str) -> str:
        """Probe, and cache the answer in the marker."""
        # the root lock held shared, as an unpack holds it: a prune's sweep of tmp/ (which
        # takes it exclusive) must not remove the probe's directory under it
        with self._shared():
            works = mnt.overlay_works(os.path.join(self.root, "tmp"))
        driver = "overlay" if works else "copy"
        # a read-only root still works: it just probes every time; the marker is a cache,
        # not synced (a crash that loses it costs one more probe; two syncs saved in every
        # fresh store's first build)
        with contextlib.suppress(OSError, KilnError):
            atomic_write(self._probe_marker, f"{key} driver={driver}\n".encode(), durable=False)
        return driver

    # layers ---------------------------------------------------------------

    def has_layer(self, chain_id: str) -> bool:
        return self.db.one("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,)) is not None

    def list_layers(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT chain_id FROM layers ORDER BY n")]

    def layer_dirs(self, chain_id: str) -> list[str]:
        """The chain's layer directories, top layer first (a flat layer ends the chain)."""
        # one query however deep the chain (a build's step 20 mounts what step 2 does)
        rows = self.db.query(
            "WITH RECURSIVE chain(depth, n, parent, flat) AS ("
            "SELECT 0, n, parent, flat FROM layers WHERE chain_id=? UNION ALL "
            "SELECT c.depth + 1, l.n, l.parent, l.flat FROM chain c "
            "JOIN layers l ON l.chain_id = c.parent WHERE NOT c.flat AND c.depth < 10000) "
            "SELECT n, parent, flat FROM chain ORDER BY depth",
            (chain_id,),
        )
        if not rows:
            raise NotFound(f"layer {chain_id} is not unpacked in {self.root}")
        last = rows[-1]
        if last["parent"] and not last["flat"]:
            if len(rows) > 10_000:
                raise InvalidArgument(f"layer chain of {chain_id} loops")
            raise NotFound(f"layer {last['parent']} is not unpacked in {self.root}")
        return [self._layer_fs(row["n"]) for row in rows]

    def unpack_layer(
        self,
        chain_id: str,
        parent: str | None,
        open_stream: Callable[[], BinaryIO],
        diff_id: str,
    ) -> str:
        """Unpack one layer (its parent must be unpacked); returns the layer's directory.

        Idempotent; two processes unpacking the same chain id wait for each
        other and unpack it once. A diff_id mismatch raises DigestMismatch and
        keeps nothing. The tree is recorded without waiting for the disk, as not yet
        durable (``adopt_staged``).
        """
        if self.has_layer(chain_id):
            return self.layer_dirs(chain_id)[0]
        self._check_parent(parent)
        with self._staging() as staged, self._chain_lock(chain_id):
            if self.has_layer(chain_id):
                return self.layer_dirs(chain_id)[0]
            with open_stream() as stream:
                staged.apply(stream)
            staged.check(diff_id, chain_id)
            self._settle_staged([staged])
            return self._adopt_staged(staged, chain_id, parent, diff_id)

    def stage_layer(self, keep: Callable[[StagedLayer], object]) -> StagedLayer:
        """A fresh ``StagedLayer`` in ``tmp/`` (the root lock held shared until it is adopted
        or discarded): for unpacking a layer before its chain id and diff_id are known.

        ``keep(staged)`` hands the tree to the caller before a Ctrl-C can land (the caller
        registers its discard there): one raised just after this returned would leave the
        tree in ``tmp/`` with nobody to discard it. If ``keep`` raises, the tree is dropped.
        The wait for the root lock (a gc holds it exclusive) stays interruptible."""
        # start-up: the layer applier only for a pull, a load or an import
        from kiln.snapshot.staged import StagedLayer

        lock = contextlib.ExitStack()
        staged = None
        kept = False
        try:
            lock.enter_context(self._shared())
            with signals_held():  # from the mkdir until the tree is the caller's
                staged = StagedLayer(self._tmpdir("unpack-"), lock)
                keep(staged)
                kept = True
        except BaseException:
            if not kept:  # a signal held meanwhile, raised once the tree was kept, is not ours
                if staged is None:
                    lock.close()
                else:
                    staged.discard()
            raise
        return staged

    @contextlib.contextmanager
    def _staging(self) -> Iterator[StagedLayer]:
        """``stage_layer`` for the block, discarded when it ends unless adopted."""
        staged: list[StagedLayer] = []
        try:
            yield self.stage_layer(staged.append)
        finally:
            for tree in staged:
                tree.discard()

    def adopt_staged(self, items: Sequence[tuple[StagedLayer, str, str | None, str]]) -> list[str]:
        """Record staged layers ``(staged, chain_id, parent, diff_id)``, bottom up; returns
        their directories. Every diff_id is checked first (DigestMismatch: nothing is
        recorded, the caller discards them); then each is renamed into ``layers/`` and
        recorded without waiting for the disk, marked with this boot's id: an unpacked
        tree is re-derivable from its blob, and a row of another boot is dropped on open
        (``_drop_torn``). A chain id already unpacked (by another process meanwhile)
        keeps its directory and the staged tree is discarded."""
        for staged, chain_id, _, diff_id in items:
            staged.check(diff_id, chain_id)
        self._settle_staged([staged for staged, *_ in items])
        out = []
        for staged, chain_id, parent, diff_id in items:
            with self._chain_lock(chain_id):
                out.append(self._adopt_staged(staged, chain_id, parent, diff_id))
        return out

    def _adopt_staged(
        self, staged: StagedLayer, chain_id: str, parent: str | None, diff_id: str
    ) -> str:
        """Record a checked staged tree as ``chain_id`` (the caller holds the chain lock),
        not yet durable; a chain id already there keeps its directory and the tree is
        dropped."""
        self._check_parent(parent)
        if self.has_layer(chain_id):
            staged.discard()
            return self.layer_dirs(chain_id)[0]
        n = self._adopt_layer(
            staged.tmp, chain_id, parent, str(diff_id), flat=False, boot=self.boot
        )
        staged.adopted()
        return self._layer_fs(n)

    def remove_layer(self, chain_id: str) -> None:
        with self._shared(), self._chain_lock(chain_id):
            row = self.db.one("SELECT n FROM layers WHERE chain_id=?", (chain_id,))
            if row is None:
                raise NotFound(f"layer {chain_id} is not unpacked")
            child = self.db.one(
                "SELECT chain_id FROM layers WHERE parent=? AND flat=0 UNION "
                "SELECT key FROM active WHERE parent=?",
                (chain_id, chain_id),
            )
            if child is not None:
                raise Conflict(f"layer {chain_id} is in use by {child[0]}; remove that first")
            with self._landing() as landing:
                with self.db.transaction() as conn:
                    landing()
                    conn.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))
                self._remove_aside(os.path.join(self.root, "layers", str(row["n"])))

    # active snapshots -----------------------------------------------------

    def prepare(self, key: str, parent: str | None, *, volatile: bool = False) -> MountSpec:
        """A writable snapshot on top of ``parent`` (None: empty).

        ``volatile``: it cannot outlive this boot (a build's container: its upper is
        written without syncs, and its process is gone after a reboot): the first open
        after another boot drops it (``_drop_torn``), so it keeps no torn layer alive."""
        return self._create(key, parent, "rw", volatile)

    def view(self, key: str, parent: str | None) -> MountSpec:
        """A read-only snapshot of ``parent``; like a volatile one, it never outlives this
        boot (a view lives as long as the process that mounts it)."""
        return self._create(key, parent, "view", True)

    def mounts(self, key: str) -> MountSpec:
        """How to mount active snapshot ``key``. Remembered per key: a snapshot's chain does
        not change while it exists (its layers are kept by it), and a build step asks
        several times (mount, copy check, commit), each a walk of the chain's rows."""
        spec = self._specs.get(key)
        if spec is not None:
            return spec
        spec = self._mounts(key)
        self._specs[key] = spec
        return spec

    def _mounts(self, key: str, lowers: list[str] | None = None) -> MountSpec:
        row = self._active(key)
        base = os.path.join(self.root, "active", str(row["n"]))
        rw = row["kind"] == "rw"
        if row["driver"] == "copy":
            fs = os.path.join(base, "fs")
            return MountSpec("bind", fs, ("rbind", "rw" if rw else "ro"), (), fs if rw else None)
        if lowers is None:
            lowers = self.layer_dirs(row["parent"]) if row["parent"] else []
        options = supported_overlay_options()
        marker = self._probe_marker
        if rw:
            lowers = lowers or [self._empty]
            upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
            return MountSpec("overlay", "overlay", options, tuple(lowers), upper, work, marker)
        # a read-only overlay needs two lowers on some kernels: pad with the empty dir
        lowers = lowers + [self._empty] if len(lowers) < 2 else lowers
        return MountSpec("overlay", "overlay", (*options, "ro"), tuple(lowers), probe_marker=marker)

    def upper_dir(self, key: str) -> str:
        row = self._active(key)
        if row["kind"] != "rw":
            raise InvalidArgument(f"snapshot {key} is a read-only view; it has no upper dir")
        sub = "fs" if row["driver"] == "copy" else "upper"
        return os.path.join(self.root, "active", str(row["n"]), sub)

    def mount_point(self, key: str) -> str:
        """An empty directory to mount active snapshot ``key`` on; it goes with the snapshot
        (``remove``/``commit``/``gc`` unmount it first if it is still mounted)."""
        row = self._active(key)
        path = os.path.join(self.root, "active", str(row["n"]), "merged")
        if path not in self._merged:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            self._merged.add(path)
        return path

    def commit(
        self,
        key: str,
        chain_id: str,
        parent: str | None,
        *,
        next_key: str | None = None,
        synced: bool = True,
    ) -> str:
        """Adopt active snapshot ``key``'s upper dir (by rename) as layer ``chain_id``.

        The snapshot must be unmounted; it is gone afterwards. Returns the
        layer's directory. If ``chain_id`` already exists the upper is dropped.

        ``synced``: the caller made the upper's tree durable; its renames are synced before
        the row. ``synced=False``: the tree was written without syncs and is re-derivable
        from a durable blob (a build step's layer): recorded without waiting for the disk,
        marked with the boot id, as an unpacked layer is (``adopt_staged``); where the
        boot id is unknown, the tree is synced here first.

        ``next_key``: go on as a new writable snapshot ``next_key`` on ``chain_id`` (what
        ``prepare(next_key, chain_id)`` gives), made in the same transaction in the same
        directory: a fresh empty upper beside the kept ``merged/`` and ``work/``, so a
        build step removes no directory (an rmdir can cost milliseconds) and the commit
        and the next snapshot are one database write.
        """
        row = self._active(key)
        if row["kind"] != "rw":
            raise InvalidArgument(f"snapshot {key} is a read-only view; only prepared ones commit")
        if (parent or None) != (row["parent"] or None):
            raise InvalidArgument(
                f"snapshot {key} was prepared on {row['parent'] or 'nothing'}, not on "
                f"{parent or 'nothing'}; commit it with its own parent"
            )
        base = os.path.join(self.root, "active", str(row["n"]))
        old_spec = self._specs.pop(key, None)
        flat = row["driver"] == "copy"
        in_place = next_key is not None and not flat
        with self._shared(), self._chain_lock(chain_id):
            exists = self.has_layer(chain_id)
            in_place = in_place and not exists
            upper = os.path.join(base, "fs" if flat else "upper")
            boot = "" if synced or exists else self._unsynced_boot(upper)
            if in_place:
                assert next_key is not None
                layer = self._commit_in_place(key, next_key, base, chain_id, parent, boot)
                if old_spec is not None and old_spec.type == "overlay" and not old_spec.readonly:
                    # the next snapshot mounts the new layer over the old one's lowers (its
                    # chain's layer dirs, or the empty pad): known without walking the chain
                    below = tuple(d for d in old_spec.lowers if d != self._empty)
                    self._specs[next_key] = replace(old_spec, lowers=(layer, *below))
            else:
                layer = self._commit_moving(key, row, base, chain_id, parent, flat, boot)
        if next_key is not None and not in_place:
            self.prepare(next_key, chain_id, volatile=bool(row["boot"]))
        return layer

    def _unsynced_boot(self, tree: str) -> str:
        """The boot id to record a tree written without syncs under; where there is none,
        the tree is made durable first and '' (durable) is returned."""
        if not self.boot and os.path.isdir(tree):
            fsync_trees([tree])
        return self.boot

    def _commit_moving(
        self,
        key: str,
        row: Any,
        base: str,
        chain_id: str,
        parent: str | None,
        flat: bool,
        boot: str = "",
    ) -> str:
        """Adopt the upper and remove the snapshot (or only remove it: the layer exists)."""
        self._forget(key)
        if self.has_layer(chain_id):
            self.remove(key)
            return self.layer_dirs(chain_id)[0]
        with self._scratch("commit-") as tmp, self._landing() as landing:
            with self.db.transaction() as conn:
                n = self._insert_layer(conn, chain_id, parent, "", flat, boot)
                landing()
                os.rename(os.path.join(base, "fs" if flat else "upper"), os.path.join(tmp, "fs"))
                self._place_layer(tmp, n, boot)
                conn.execute("DELETE FROM active WHERE key=?", (key,))
            holds.release(base)
            self._remove_aside(base)
        return self._layer_fs(n)

    def _commit_in_place(
        self, key: str, next_key: str, base: str, chain_id: str, parent: str | None, boot: str
    ) -> str:
        """Adopt the upper as a layer and turn the snapshot into ``next_key`` on it.

        A crash before the transaction's end leaves the old row (its directory now
        without a whole upper: garbage its owner's sweep removes) and an unrecorded
        ``layers/<n>`` that the next insert of that number or ``gc`` removes."""
        upper = os.path.join(base, "upper")
        fresh = os.path.join(base, "upper.next")
        if os.path.lexists(fresh):  # left by a crash
            shutil.rmtree(fresh)
        os.mkdir(fresh)
        st = os.stat(upper)  # the new top layer's root: the next upper looks like it
        os.chown(fresh, st.st_uid, st.st_gid)
        os.chmod(fresh, st.st_mode & 0o7777)
        with self._scratch("commit-") as tmp, self._landing() as landing:
            with self.db.transaction() as conn:
                n = self._insert_layer(conn, chain_id, parent, "", False, boot)
                landing()
                os.rename(upper, os.path.join(tmp, "fs"))
                self._place_layer(tmp, n, boot)
                os.rename(fresh, upper)
                now = time.time()
                conn.execute(
                    "UPDATE active SET key=?, parent=?, created=? WHERE key=?",
                    (next_key, chain_id, now, key),
                )
            old = self._rows.pop(key, None)
            if old is not None:  # still held, in the same directory: known without a query
                self._rows[next_key] = {**old, "key": next_key, "parent": chain_id, "created": now}
        return self._layer_fs(n)

    def discard(self, key: str) -> None:
        """``remove`` for a clean-up: nothing to say when ``key`` is not there or cannot
        go now (what is left, a later gc or sweep removes)."""
        with contextlib.suppress(Exception):
            self.remove(key)

    def remove(self, key: str) -> None:
        row = self._active(key)
        self._forget(key)
        path = os.path.join(self.root, "active", str(row["n"]))
        with self._landing() as landing:
            try:
                with self.db.transaction() as conn:
                    landing()
                    conn.execute("DELETE FROM active WHERE key=?", (key,))
            except NoSpace:
                self._remove_when_full(key, path)
                return
            holds.release(path)
            # deleted on the background thread (``_reap``): a removal's rmdirs and unlinks
            # wait for the journal on a busy disk (~1-15 ms for a build's working container
            # at the end of every build), while the command goes on
            self._remove_aside(path)

    def _remove_when_full(self, key: str, path: str) -> None:
        """``remove`` where the disk is full (often because of this very snapshot, a RUN
        that filled it): its files go first, then its row; a crash between leaves a row
        without a directory, which removing again clears."""
        holds.release(path)
        try:
            self._rmtree_aside(path)
        except OSError:  # not even room for the directory to move it aside into
            shutil.rmtree(path, ignore_errors=True)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM active WHERE key=?", (key,))

    def list_active(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT key FROM active ORDER BY n")]

    # gc -------------------------------------------------------------------

    def gc(self, keep_layers: set[str], keep_active: set[str]) -> int:
        """Remove layers and snapshots not kept (nor young); returns how many were removed.
        See ``sweep``."""
        return self.sweep(keep_layers, keep_active).removed

    def sweep(
        self,
        keep_layers: Set[str],
        keep_active: Set[str],
        released: Mapping[str, float] | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Remove unpacked layers and active snapshots nothing keeps; the store's GC calls
        this (it implements ``kiln.store.sweeper.Sweeper``).

        Kept: ``keep_layers`` and their parents, ``keep_active`` and their parents'
        chains, anything younger than ``grace_seconds`` -- except a layer in ``released``
        created no later than the time given there (the last image using it was deleted).
        Also removes ``tmp/``, unrecorded directories left by crashes and the RUN stub
        layers nobody holds (``kiln.snapshot.stubs``). Returns how many
        layers and snapshots went and the bytes freed (all of it, crash garbage too).

        Crash safety: the rows go first (one transaction), then each directory is renamed
        into ``tmp/`` and, once the lock is released, deleted there; a killed sweep leaves
        unrecorded directories and ``tmp/`` garbage, which the next one removes. A Ctrl-C
        or SIGTERM from the rows' removal on is held until the directories are gone.
        """
        if not dry_run:
            self.promote_durable()
        released = released or {}
        young = time.time() - self.grace_seconds
        with contextlib.ExitStack() as finishing:
            with file_lock(self._lock_path, exclusive=True):
                active = self.db.query("SELECT key, n, parent, created FROM active")
                doomed_active = [
                    r
                    for r in active
                    if r["key"] not in keep_active
                    and r["created"] < young
                    and not holds.in_use(self._dir("active", r["n"]))
                ]
                roots = set(keep_layers)
                roots.update(r["parent"] for r in active if r not in doomed_active and r["parent"])
                layers = {r["chain_id"]: r for r in self.db.query("SELECT * FROM layers")}
                roots.update(
                    c
                    for c, r in layers.items()
                    if r["created"] >= young and (c not in released or r["created"] > released[c])
                )
                keep: set[str] = set()
                for root in roots:
                    chain: str | None = root
                    while chain and chain not in keep and chain in layers:
                        keep.add(chain)
                        chain = None if layers[chain]["flat"] else layers[chain]["parent"]
                doomed_layers = [r for c, r in layers.items() if c not in keep]
                doomed_dirs = [self._dir("layers", r["n"]) for r in doomed_layers]
                doomed_dirs += [self._dir("active", r["n"]) for r in doomed_active]
                doomed_dirs += self._unrecorded_dirs(
                    {str(r["n"]) for r in layers.values()}, {str(r["n"]) for r in active}
                )
                garbage = [os.path.join(self.root, "tmp", n) for n in self._list("tmp")]
                freed = sum(tree_size(d) for d in doomed_dirs + garbage)
                removed = len(doomed_active) + len(doomed_layers)
                if dry_run:
                    return SweepResult(removed, freed)
                # from the rows' removal on, a Ctrl-C or SIGTERM waits until the directories
                # are gone: stopped between the two, the sweep left them unrecorded in
                # layers/ and active/ or in tmp/, for a later sweep to find
                finishing.enter_context(signals_held())
                with self.db.transaction() as conn:
                    for r in doomed_active:
                        self._forget(r["key"])
                        conn.execute("DELETE FROM active WHERE key=?", (r["key"],))
                    for r in doomed_layers:
                        conn.execute("DELETE FROM layers WHERE chain_id=?", (r["chain_id"],))
                garbage += [a for d in doomed_dirs if (a := self._move_aside(d)) is not None]
                # the RUN stub layers no RUN holds, made before the grace period (a few inodes)
                taken = stubs.take_unheld(self._stubs_dir, young, self._move_aside)
                freed += sum(tree_size(d) for d in taken)
                garbage += taken
                # nobody holds a chain lock while we hold the root lock exclusively
                for name in self._list("locks"):
                    os.unlink(os.path.join(self.root, "locks", name))
            # what is in tmp/ is nobody's: delete it without keeping unpacks and prepares waiting
            for d in garbage:
                shutil.rmtree(d, ignore_errors=True)
        return SweepResult(removed, freed)

    def _unrecorded_dirs(self, live_layers: set[str], live_active: set[str]) -> list[str]:
        """Directories under layers/ and active/ no row names (left by crashes)."""
        out = []
        for sub, live in (("layers", live_layers), ("active", live_active)):
            out += [os.path.join(self.root, sub, n) for n in self._list(sub) if n not in live]
        return out

    def _list(self, sub: str) -> list[str]:
        try:
            return os.listdir(os.path.join(self.root, sub))
        except FileNotFoundError:
            return []

    def _dir(self, sub: str, n: int) -> str:
        return os.path.join(self.root, sub, str(n))

    def recycle_work(self, key: str) -> None:
        """After an unmount of writable snapshot ``key``: its overlay work dir (the kernel's
        scratch, with a ``volatile`` mount's marker in it) is moved into ``tmp/`` and
        deleted on a background thread, and an empty one takes its place. Mounting over a
        used work dir makes the kernel empty it first, and removing the volatile marker
        is one more rmdir: ~10 ms per build step where an rmdir waits for the disk,
        against ~1 ms for a fresh one. ``close`` waits for the deletions; a kill leaves
        them in ``tmp/``, which ``gc`` clears."""
        row = self._active(key)
        if row["driver"] != "overlay" or row["kind"] != "rw":
            return
        work = os.path.join(self.root, "active", str(row["n"]), "work")
        # renamed into tmp/ itself (no holder directory made for it: one inode fewer a
        # step), then touched: a young "rm-" entry is a removal under way, which a sweep
        # of another command leaves be
        aside = os.path.join(self.root, "tmp", f"rm-{os.urandom(8).hex()}")
        with signals_held():  # from the rename until it is the background thread's to delete
            try:
                os.rename(work, aside)
            except FileNotFoundError:
                return
            os.utime(aside)
            self._reap(aside)
            os.mkdir(work, 0o700)

    def _reap(self, path: str) -> None:
        """Delete ``path`` (in ``tmp/``) on the background thread, which stays for the next
        step's deletion (``kiln.util.lingering``) until ``settle``."""
        self._reaper.submit(shutil.rmtree, path, True)

    def settle(self) -> None:
        """Wait until the background deletions (``recycle_work``) are done and the thread
        doing them has ended."""
        self._reaper.close()

    def close(self) -> None:
        self.settle()
        self.db.close()

    def stub_layer(self, dirs: Sequence[str], files: Sequence[str]) -> str:
        """A read-only directory holding empty ``dirs`` (0755) and empty ``files`` (0644),
        with their parents, owned by this process, to put under a run's overlay
        (``MountSpec.with_bottom``): a rootfs without ``/proc`` or ``/etc/hosts`` then
        shows them without a placeholder made in (and removed from) the upper directory,
        each a journalled change, and without ``/etc`` copied up for it. Made once per
        set of names (``stubs/<hash>``, renamed into place whole), then reused while it
        holds exactly its entries (``kiln.snapshot.stubs``: one damaged by hand or torn
        by a power loss is made again). A RUN uses it through ``held_stub``: the sweep
        removes one nobody holds."""
        names = "\0".join(["d", *sorted(dirs), "f", *sorted(files)]).encode()
        path = os.path.join(self._stubs_dir, hashlib.sha256(names).hexdigest()[:16])
        tree = stubs.stub_tree(dirs, files)
        if stubs.is_whole(path, tree):
            return path
        # made in tmp/ under the root lock (shared), as all snapshot work is: another
        # command's sweep clears tmp/ only while nobody holds it; one maker at a time, so
        # a damaged stub is set aside once, never a whole one another maker just put there
        with self._shared(), file_lock(os.path.join(self.root, "locks", "stubs.lock")):
            if stubs.is_whole(path, tree):
                return path  # another process made it meanwhile
            if os.path.lexists(path):
                self._rmtree_aside(path)
            with self._scratch("stubs-") as tmp:
                stubs.make_tree(tmp, tree)
                os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                os.rename(tmp, path)
        return path

    @contextlib.contextmanager
    def held_stub(self, dirs: Sequence[str], files: Sequence[str]) -> Iterator[str]:
        """``stub_layer``'s directory, held (``stubs.hold``) while the context lasts: mount
        on it inside. A sweep that set it aside between its making and the hold takes
        only one made before the grace period, so the one made again is held."""
        for _ in range(3):
            path = self.stub_layer(dirs, files)
            fd = stubs.hold(path)
            if fd is not None:
                break
        else:
            raise KilnError(f"the RUN stub layer in {self.root} keeps being removed; retry")
        try:
            yield path
        finally:
            os.close(fd)

    # helpers --------------------------------------------------------------

    @property
    def _empty(self) -> str:
        return os.path.join(self.root, "empty")

    @property
    def _stubs_dir(self) -> str:
        return os.path.join(self.root, "stubs")

    @property
    def _probe_marker(self) -> str:
        return os.path.join(self.root, "overlay-probe")

    @property
    def _lock_path(self) -> str:
        return os.path.join(self.root, "snapshots.lock")

    def _shared(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self._lock_path, exclusive=False)

    def _chain_lock(self, chain_id: str) -> contextlib.AbstractContextManager[None]:
        name = chain_id.replace(":", "-").replace("/", "_")
        return file_lock(os.path.join(self.root, "locks", name + ".lock"))

    def _layer_fs(self, n: int) -> str:
        return os.path.join(self.root, "layers", str(n), "fs")

    def _tmpdir(self, prefix: str) -> str:
        import tempfile  # start-up: a cached build makes no snapshot

        return tempfile.mkdtemp(prefix=prefix, dir=os.path.join(self.root, "tmp"))

    def _rmtree_aside(self, path: str) -> None:
        """Remove a directory: first rename it into tmp/ so no half-removed tree is visible."""
        aside = self._move_aside(path)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def _remove_aside(self, path: str) -> None:
        """Remove a directory: renamed into tmp/ now, deleted on the background thread."""
        aside = self._move_aside(path)
        if aside is not None:
            self._reap(aside)

    @contextlib.contextmanager
    def _scratch(self, prefix: str) -> Iterator[str]:
        """A new directory in tmp/ for the block, removed when it ends (nothing is left to
        remove once it was renamed into place). Made with Ctrl-C held until it is the
        block's to remove: one raised just after the mkdir would leave it behind."""
        path = ""
        try:
            with signals_held():
                path = self._tmpdir(prefix)
            yield path
        finally:
            if path:
                shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def _landing(self) -> Iterator[Callable[[], None]]:
        """For a change of rows and directories that must land together: calling what it
        gives (inside the transaction, once its lock is taken, before the first rename)
        holds Ctrl-C and SIGTERM until the block ends, after the commit and what follows
        it (the renames aside, what this process knows). A signal raised between a rename
        and its commit would roll the row back and leave the directory unrecorded (a
        build's snapshot in ``active/``), or after the commit leave it in ``tmp/``."""
        with contextlib.ExitStack() as stack:
            yield lambda: stack.enter_context(signals_held())

    def _move_aside(self, path: str) -> str | None:
        """Unmount ``path``'s mount point and rename it into a new dir in tmp/ (returned)."""
        _release_mount_point(path)
        holder = self._tmpdir("rm-")
        try:
            os.rename(path, os.path.join(holder, "x"))
        except FileNotFoundError:
            os.rmdir(holder)
            return None
        return holder

    def _check_parent(self, parent: str | None) -> None:
        if parent and not self.has_layer(parent):
            raise NotFound(f"parent layer {parent} is not unpacked; unpack layers bottom up")

    def _active(self, key: str) -> Mapping[str, Any] | sqlite3.Row:
        """Active snapshot ``key``'s row. One this process made (``_create``) is known
        without a query while it holds it: no other process removes a held snapshot, and
        this one changes it only through ``commit``/``remove``/``sweep``, which update
        what is known (a build step asks about ten times: mount point, upper, commit...)."""
        row = self._rows.get(key)
        if row is not None:
            return row
        found = self.db.one("SELECT * FROM active WHERE key=?", (key,))
        if found is None:
            raise NotFound(f"snapshot {key} does not exist")
        return found

    def _forget(self, key: str) -> None:
        """Drop what is known of active snapshot ``key`` (it is going or changing)."""
        self._specs.pop(key, None)
        row = self._rows.pop(key, None)
        if row is not None:
            self._merged.discard(os.path.join(self.root, "active", str(row["n"]), "merged"))

    def _insert_layer(
        self,
        conn: sqlite3.Connection,
        chain_id: str,
        parent: str | None,
        diff_id: str,
        flat: bool,
        boot: str = "",
    ) -> int:
        cur = conn.execute(
            "INSERT INTO layers(chain_id, parent, diff_id, flat, created, boot) "
            "VALUES (?,?,?,?,?,?)",
            (chain_id, parent, diff_id, int(flat), time.time(), boot),
        )
        n = cur.lastrowid
        assert n is not None  # an INSERT always sets it
        stale = os.path.join(self.root, "layers", str(n))
        if os.path.lexists(stale):  # left by a crash between rename and commit
            shutil.rmtree(stale)
        return n

    def _place_layer(self, tmp: str, n: int, boot: str = "") -> None:
        """Rename a committed upper's holder ``tmp`` to ``layers/<n>``. Its tree durable
        (``boot`` ''): both renames are made durable before the row that names it, so after
        a power loss a recorded layer is never an empty or missing directory (the two
        directories fsynced together: about one wait for the disk). Recorded as not yet
        durable (``boot``, see ``_drop_torn``): no wait."""
        dest = os.path.join(self.root, "layers", str(n))
        os.rename(tmp, dest)
        if not boot:
            fsync_all([], dirs=[dest, os.path.join(self.root, "layers")])

    def _adopt_layer(
        self, tmp: str, chain_id: str, parent: str | None, diff_id: str, flat: bool, boot: str
    ) -> int:
        """Record ``tmp`` as layer ``chain_id``: durable first (``boot`` '') or, marked with
        ``boot``, without waiting for the disk (``_drop_torn`` after another boot)."""
        with self._landing() as landing, self.db.transaction() as conn:
            n = self._insert_layer(conn, chain_id, parent, diff_id, flat, boot)
            landing()
            self._place_layer(tmp, n, boot)
        return n

    def _settle_staged(self, staged: Sequence[StagedLayer]) -> None:
        """Before staged trees are recorded: nothing to wait for when they are recorded as
        not yet durable (their big files' writeback started as they were written); made
        durable together where the boot id is unknown (one wait for the disk)."""
        if not self.boot:
            fsync_trees([s.fs for s in staged])

    def promote_durable(self) -> int:
        """Mark the layers this boot recorded without a sync, at least
        ``promote_after_seconds`` ago, durable: one syncfs of the file system under
        ``layers/`` makes everything written before it durable, their trees and renames
        included. Then a clean reboot does not drop them. Returns how many were marked."""
        cutoff = time.time() - self.promote_after_seconds
        old = "WHERE boot=? AND created<=?"
        if not self.boot or self.db.one(f"SELECT 1 FROM layers {old}", (self.boot, cutoff)) is None:
            return 0
        try:
            syncfs(os.path.join(self.root, "layers"))
        except OSError:
            return 0  # they stay not yet durable: safe, a reboot unpacks them again
        with self.db.transaction() as conn:
            return conn.execute(f"UPDATE layers SET boot='' {old}", (self.boot, cutoff)).rowcount

    def _drop_torn(self) -> None:
        """Drop the layers recorded as not yet durable under another boot id (a power loss
        or kernel crash came between: their trees may have lost writes), directory and
        row, so the next use unpacks them again from their blobs (``unpack_layers`` walks
        an image's layers bottom up). Active snapshots that cannot outlive their boot
        (views and build containers, ``active.boot``) of another boot go too, unless a
        live process holds them (``holds``): their process is gone and a volatile upper
        may be torn as well. Run once per open: two small queries when there is nothing to
        drop.

        Layers above a dropped one keep their rows: lower dirs are per layer and found by
        chain id at mount time, so they are valid again once it is re-unpacked under the
        same chain id. A layer that a lasting active snapshot rests on (a ``kiln from``
        working container's chain) is kept as it now is on disk, with its old mark:
        dropping it would leave the container unmountable, and its upper dir was no more
        durable; it is never marked durable (``promote_durable`` takes this boot's rows
        only) and goes at the first open after nothing rests on it any more; ``kiln system
        check`` verifies it against its blob meanwhile. Decided in one transaction."""
        if not self.boot:
            return
        if (
            self.db.one(_STALE_LAYERS, (self.boot,)) is None
            and self.db.one(_STALE_ACTIVE, (self.boot,)) is None
        ):
            return
        # a layer kept for a lasting snapshot stays stale: decide by reading first, so that
        # such a root does not cost every open a write
        if self._torn(self.db.conn) == ([], []):
            return
        with self._shared(), self._landing() as landing:
            with self.db.transaction() as conn:
                dead, doomed = self._torn(conn)
                landing()
                conn.executemany("DELETE FROM active WHERE n=?", [(n,) for n in dead])
                conn.executemany("DELETE FROM layers WHERE n=?", [(n,) for n in doomed])
            for path in [self._dir("layers", n) for n in doomed] + [
                self._dir("active", n) for n in dead
            ]:
                self._remove_aside(path)

    def _torn(self, conn: sqlite3.Connection) -> tuple[list[int], list[int]]:
        """What ``_drop_torn`` drops: the active snapshots of another boot nobody holds,
        and the stale layers no other active snapshot rests on (numbers)."""
        dead = [  # one a live process holds is never taken (a root shared by machines)
            r["n"]
            for r in conn.execute(_STALE_ACTIVE, (self.boot,)).fetchall()
            if not holds.in_use(self._dir("active", r["n"]))
        ]
        layers = {
            r["chain_id"]: r for r in conn.execute("SELECT chain_id, parent, flat FROM layers")
        }
        kept: set[str] = set()
        for r in conn.execute("SELECT n, parent FROM active WHERE parent IS NOT NULL"):
            chain: str | None = None if r["n"] in dead else r["parent"]
            while chain and chain not in kept and chain in layers:
                kept.add(chain)
                chain = None if layers[chain]["flat"] else layers[chain]["parent"]
        stale = conn.execute(_STALE_LAYERS, (self.boot,)).fetchall()
        return dead, [r["n"] for r in stale if r["chain_id"] not in kept]

    def _create(self, key: str, parent: str | None, kind: str, volatile: bool) -> MountSpec:
        if not key:
            raise InvalidArgument("a snapshot needs a key")
        driver = self.driver
        with self._shared():
            if self.db.one("SELECT 1 FROM active WHERE key=?", (key,)) is not None:
                raise AlreadyExists(f"snapshot {key} already exists")
            self._check_parent(parent)
            with self._scratch("active-") as tmp:
                lowers = self.layer_dirs(parent) if parent else []
                top = lowers[0] if lowers else self._empty
                if driver == "copy":
                    fs = os.path.join(tmp, "fs")
                    os.mkdir(fs, 0o755)
                    # start-up: only the copy driver merges layers
                    from kiln.snapshot.copytree import merge_layers

                    merge_layers(lowers, fs)
                elif kind == "rw":
                    upper = os.path.join(tmp, "upper")
                    os.mkdir(upper)
                    os.mkdir(os.path.join(tmp, "work"), 0o700)
                    st = os.stat(top)
                    os.chown(upper, st.st_uid, st.st_gid)
                    os.chmod(upper, st.st_mode & 0o7777)
                row = {"key": key, "parent": parent, "kind": kind, "driver": driver,
                       "created": time.time(), "boot": self.boot if volatile else ""}  # fmt: skip
                with self._landing() as landing:
                    placed = ""
                    try:
                        with self.db.transaction() as conn:
                            cur = conn.execute(
                                "INSERT INTO active(key, parent, kind, driver, created, boot) "
                                "VALUES (:key,:parent,:kind,:driver,:created,:boot)",
                                row,
                            )
                            dest = os.path.join(self.root, "active", str(cur.lastrowid))
                            if os.path.lexists(dest):
                                shutil.rmtree(dest)
                            landing()
                            os.rename(tmp, dest)
                            placed = dest
                            holds.hold(dest)  # before the shared lock goes: no sweep in between
                    except BaseException:  # the row did not land (a failed COMMIT)
                        if placed:
                            holds.release(placed)
                            shutil.rmtree(placed, ignore_errors=True)
                        raise
                    self._rows[key] = {**row, "n": cur.lastrowid}
        spec = self._mounts(key, list(lowers))
        self._specs[key] = spec
        return spec


def _release_mount_point(snapshot_dir: str) -> None:
    """Unmount ``<snapshot_dir>/merged`` if still mounted, so removal never reaches into it."""
    merged = os.path.join(snapshot_dir, "merged")
    if mnt.is_mountpoint(merged):
        mnt.unmount(merged)
