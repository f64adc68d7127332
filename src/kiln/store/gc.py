"""Garbage collection and consistency checks.

GC marks, then sweeps, like containerd. Roots: every image row (named or
dangling; an image stays until ``delete_image``), every manifest list (its document
and the blobs of every child it names, recorded in ``index_blobs``), the images of working
containers and of the build cache, and everything held by an unexpired lease.
From each image it marks the blobs its own manifest names (manifest, config and
the layer blobs recorded per image, never one blob per chain ID: two images may
hold the same layer in two encodings) and its layer chains; from each working
container the snapshot it holds. It then removes unmarked blobs and stale ingests
(anonymous ones not being written, named ones idle for ``INGEST_MAX_AGE``), and
hands the chains and snapshots to its sweepers (``kiln.store.sweeper``: the
snapshotter), which remove unpacked layers and snapshots nothing holds.

Protection of work in flight:

- GC holds ``gc.lock`` exclusively from mark to sweep; publishing a blob holds
  it shared while it joins the thread's leases and renames, so a blob written
  under a lease is never swept.
- A blob written without a lease is protected only by a grace period: blobs
  younger than ``Store.blob_grace_seconds`` (10 minutes by default; a
  re-put of an existing blob restarts it) are never swept. Work that takes
  longer between writing blobs and ``put_image`` must use a lease.
- The grace period does not protect what a deleted image held (``released``,
  written by ``delete_image``): a prune or rmi the user asked for frees the
  space at once. A blob re-put or reused since the deletion (its mtime is later)
  is still protected.
- Reusing a blob found present goes through ``lease_existing_blob`` (check and
  lease in one step under the shared lock); undoing a failed operation goes
  through ``delete_blobs_if_unreferenced`` (under the exclusive lock), never a
  bare ``delete_blob`` of something another operation may have reused.

What GC reports is what left the disk: the sizes of the blobs and ingests it
deleted and the sweepers' own counts.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import field
from typing import Protocol

from kiln.errors import InvalidArgument
from kiln.oci import Digest, Digester
from kiln.store import paths
from kiln.store.context_indexes import CONTEXT_INDEX_DIR, remove_orphan_indexes
from kiln.store.db import Database
from kiln.store.ingest import CHUNK, remove_stale_ingests
from kiln.store.records import GCResult
from kiln.store.sweeper import Sweeper
from kiln.util.lazy_dataclass import dataclass
from kiln.util.locks import file_lock

INGEST_MAX_AGE = 24 * 3600.0
DEFAULT_BLOB_GRACE = 600.0
# Linux's CLOCK_REALTIME_COARSE (Python names no constant for it): the clock the kernel
# stamps file times with, up to a tick behind time.time()
_CLOCK_REALTIME_COARSE = 5


def file_clock() -> float:
    """Now, on the clock file times are stamped with: a blob reused (its mtime touched)
    after this moment never looks older than it. Compare with ``<`` (same tick: unknown)."""
    if sys.platform == "linux":
        try:
            return time.clock_gettime(_CLOCK_REALTIME_COARSE)
        except OSError:
            pass
    return time.time() - 0.05


@dataclass
class Marks:
    """What garbage collection keeps."""

    blobs: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)  # chain ids
    active: set[str] = field(default_factory=set)  # snapshot keys
    released_blobs: dict[str, float] = field(default_factory=dict)
    released_layers: dict[str, float] = field(default_factory=dict)


class _Leased(Protocol):
    """A lease as the undo sees it (``kiln.store.leases.Lease``, which imports this module)."""

    id: str


class Maintenance:
    """The GC role: mark from the roots, sweep blobs (and, through sweepers, snapshots);
    undo a failed operation's blobs; ``fsck``."""

    #: blobs younger than this are never swept (see the module)
    blob_grace_seconds: float = DEFAULT_BLOB_GRACE

    def __init__(self, root: str, db: Database, iter_blobs: Callable[[], Iterator[Digest]]):
        self.root = root
        self.db = db
        self.iter_blobs = iter_blobs

    def gc(self, dry_run: bool = False, sweepers: Sequence[Sweeper] = ()) -> GCResult:
        """Mark from the roots, sweep blobs, then let each sweeper sweep (see the module)."""
        now = time.time()
        if not dry_run:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM leases WHERE expires <= ?", (now,))
        removed = freed = 0
        with file_lock(os.path.join(self.root, paths.GC_LOCK), exclusive=True):
            marks = self._mark(now)
            for digest in list(self.iter_blobs()):
                if str(digest) in marks.blobs:
                    continue
                path = paths.blob_path(self.root, digest)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                released = marks.released_blobs.get(str(digest))
                freed_by_user = released is not None and st.st_mtime < released
                if now - st.st_mtime < self.blob_grace_seconds and not freed_by_user:
                    continue
                if not dry_run:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        continue
                removed += 1
                freed += st.st_size
            _, ingest_bytes = remove_stale_ingests(self.root, INGEST_MAX_AGE, dry_run)
            freed += ingest_bytes
            folder = os.path.join(self.root, CONTEXT_INDEX_DIR)
            freed += remove_orphan_indexes(folder, dry_run)[1]
        # outside the blob lock: a sweeper takes its own (never both at once, in any order)
        swept = swept_bytes = 0
        for sweeper in sweepers:
            n, size = sweeper.sweep(
                marks.layers, marks.active, marks.released_layers, dry_run=dry_run
            )
            swept += n
            swept_bytes += size
        if not dry_run:
            self._forget_released(marks, layers_too=bool(sweepers))
            self._drop_orphan_layers()
        return GCResult(
            blobs_removed=removed,
            bytes_freed=freed + swept_bytes,
            snapshots_removed=swept,
            snapshot_bytes_freed=swept_bytes,
        )

    def delete_blobs_if_unreferenced(
        self, digests: Iterable[Digest], except_leases: Iterable[_Leased | None] = ()
    ) -> list[Digest]:
        """Delete those of ``digests`` nothing else keeps; returns the ones deleted.

        For undoing a failed operation: its blobs go only if no image references
        them and no live lease other than ``except_leases`` (the operation's own and
        those it runs under: every lease open in its context) holds them, checked and deleted under the exclusive GC lock, so a
        concurrent operation that found such a blob present and reused it keeps
        it. The grace period does not apply.
        """
        wanted = [d if isinstance(d, Digest) else Digest.parse(str(d)) for d in digests]
        if not wanted:
            return []
        removed: list[Digest] = []
        with file_lock(os.path.join(self.root, paths.GC_LOCK), exclusive=True):
            own = frozenset(lease.id for lease in except_leases if lease is not None)
            keep = self._mark(time.time(), except_leases=own)
            for digest in dict.fromkeys(wanted):
                if str(digest) in keep.blobs:
                    continue
                try:
                    os.unlink(paths.blob_path(self.root, digest))
                except FileNotFoundError:
                    continue
                removed.append(digest)
        return removed

    def _mark(self, now: float, except_leases: frozenset[str] = frozenset()) -> Marks:
        """Everything a root keeps; the blob entries of ``except_leases`` do not count."""
        marks = Marks()
        with self.db.snapshot() as conn:
            marks.blobs.update(
                r[0]
                # every image row is a root (containers and cache entries refer to rows;
                # a leased image deleted meanwhile is kept through its lease's blob rows)
                for r in conn.execute(
                    "SELECT manifest_digest FROM images UNION SELECT config_digest FROM images "
                    "UNION SELECT COALESCE(il.blob_digest, l.blob_digest) FROM image_layers il "
                    "LEFT JOIN layers l ON l.chain_id = il.chain_id "
                    # a list keeps its document and every child's blobs (kiln.store.indexes)
                    "UNION SELECT digest FROM indexes UNION SELECT digest FROM index_blobs"
                )
                if r[0]
            )
            marks.blobs.update(
                ref
                for ref, lease_id in conn.execute(
                    "SELECT lr.ref, l.id FROM lease_resources lr JOIN leases l "
                    "ON l.id = lr.lease_id WHERE lr.kind = 'blob' AND l.expires > ?",
                    (now,),
                )
                if lease_id not in except_leases
            )
            marks.layers.update(
                r[0] for r in conn.execute("SELECT DISTINCT chain_id FROM image_layers")
            )
            marks.active.update(
                r[0]
                for r in conn.execute(
                    "SELECT snapshot_key FROM containers WHERE snapshot_key IS NOT NULL"
                )
            )
            for kind, ref, at in conn.execute("SELECT kind, ref, at FROM released"):
                if kind == "blob":
                    marks.released_blobs[ref] = at
                else:
                    marks.released_layers[ref] = at
        return marks

    def _forget_released(self, marks: Marks, layers_too: bool) -> None:
        """Drop the released entries this GC has seen (swept, or held again since); one
        a deletion wrote or renewed meanwhile stays for the next GC."""
        seen = [("blob", ref, at) for ref, at in marks.released_blobs.items()]
        if layers_too:
            seen += [("layer", ref, at) for ref, at in marks.released_layers.items()]
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM released WHERE kind=? AND ref=? AND at=?", seen)

    def _drop_orphan_layers(self) -> None:
        """Forget chains no image uses (``register_image`` writes both in one transaction)."""
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)"
            )

    def fsck(self) -> list[str]:
        """Re-hash every blob and check every metadata reference; returns the problems."""
        problems: list[str] = []
        for digest in list(self.iter_blobs()):
            actual = _hash_file(paths.blob_path(self.root, digest), digest.algorithm)
            if actual is not None and actual != digest:
                problems.append(f"blob {digest}: content is corrupt (it hashes to {actual})")
        with self.db.snapshot() as conn:
            for row in conn.execute("PRAGMA quick_check"):
                if row[0] != "ok":
                    problems.append(f"database: {row[0]}")
            for row in conn.execute("PRAGMA foreign_key_check"):
                problems.append(
                    f"database: table {row[0]} row {row[1]} refers to a missing {row[2]}"
                )
            for image_id, manifest, config in conn.execute(
                "SELECT id, manifest_digest, config_digest FROM images"
            ).fetchall():
                if config != image_id:
                    problems.append(f"image {image_id}: config digest {config} is not its ID")
                for what, blob in (("manifest", manifest), ("config", config)):
                    if not self._blob_ok(blob):
                        problems.append(f"image {image_id}: {what} blob {blob} is missing")
            for index_id, digest in conn.execute(
                "SELECT id, digest FROM indexes UNION ALL SELECT index_id, digest FROM index_blobs"
            ).fetchall():
                if not self._blob_ok(digest):
                    problems.append(f"manifest list {index_id}: blob {digest} is missing")
            for image_id, position, blob in conn.execute(
                "SELECT il.image_id, il.position, COALESCE(il.blob_digest, l.blob_digest) "
                "FROM image_layers il LEFT JOIN layers l ON l.chain_id = il.chain_id "
                "ORDER BY il.image_id, il.position"
            ).fetchall():
                if not blob or not self._blob_ok(blob):
                    problems.append(f"image {image_id}: layer {position} blob {blob} is missing")
        return problems

    def _blob_ok(self, blob: str) -> bool:
        try:
            return os.path.isfile(paths.blob_path(self.root, Digest.parse(blob)))
        except InvalidArgument:
            return False


#: the blobs image ``?1``'s manifest names (manifest, config, each layer's own blob), as
#: the one column ``d`` (NULL where a row has none): the one query for ``image_blobs``,
#: a lease that holds an image and the blobs ``delete_image`` releases
IMAGE_BLOBS_SQL = (
    "SELECT manifest_digest AS d FROM images WHERE id=?1 "
    "UNION SELECT config_digest FROM images WHERE id=?1 "
    "UNION SELECT COALESCE(il.blob_digest, l.blob_digest) FROM image_layers il "
    "LEFT JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id=?1"
)


def image_blobs(conn: sqlite3.Connection, image_id: str) -> set[str]:
    """The blobs the image's manifest names: manifest, config, each layer's own blob."""
    rows = conn.execute(f"SELECT d FROM ({IMAGE_BLOBS_SQL}) WHERE d IS NOT NULL", (image_id,))
    return {r[0] for r in rows}


def _hash_file(path: str, algorithm: str) -> Digest | None:
    digester = Digester(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digester.update(chunk)
    except FileNotFoundError:
        return None
    return digester.digest()
