"""Garbage collection and consistency checks.

GC marks, then sweeps, like containerd. Roots: every image row (named or
dangling; an image stays until ``delete_image``), the images of working
containers and of the build cache, and everything held by an unexpired lease.
From each image it marks the manifest, config and layer blobs. It then removes
unmarked blobs and stale ingests (anonymous ones not being written, named ones
idle for ``INGEST_MAX_AGE``).

Protection of work in flight:

- GC holds ``gc.lock`` exclusively from mark to sweep; publishing a blob holds
  it shared while it joins the thread's leases and renames, so a blob written
  under a lease is never swept.
- A blob written without a lease is protected only by a grace period: blobs
  younger than ``Store.blob_grace_seconds`` (10 minutes by default; a
  re-put of an existing blob restarts it) are never swept. Work that takes
  longer between writing blobs and ``put_image`` must use a lease.
- Reusing a blob found present goes through ``lease_existing_blob`` (check and
  lease in one step under the shared lock); undoing a failed operation goes
  through ``delete_blobs_if_unreferenced`` (under the exclusive lock), never a
  bare ``delete_blob`` of something another operation may have reused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from kiln.errors import InvalidArgument
from kiln.oci import Digest, Digester
from kiln.store import paths
from kiln.store.db import Database
from kiln.store.ingest import CHUNK, remove_stale_ingests
from kiln.store.locks import file_lock
from kiln.store.records import GCResult

INGEST_MAX_AGE = 24 * 3600.0
DEFAULT_BLOB_GRACE = 600.0


class MaintenanceMixin:
    root: str
    db: Database
    blob_grace_seconds: float

    def gc(self, dry_run: bool = False) -> GCResult:
        now = time.time()
        if not dry_run:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM leases WHERE expires <= ?", (now,))
        removed = freed = 0
        with file_lock(os.path.join(self.root, paths.GC_LOCK), exclusive=True):
            keep = self._mark(now)
            for digest in list(self.iter_blobs()):  # type: ignore[attr-defined]
                if str(digest) in keep:
                    continue
                path = paths.blob_path(self.root, digest)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if now - st.st_mtime < self.blob_grace_seconds:
                    continue
                if not dry_run:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        continue
                removed += 1
                freed += st.st_size
            remove_stale_ingests(self.root, INGEST_MAX_AGE, dry_run)
        if not dry_run:
            self._drop_orphan_layers()
        return GCResult(blobs_removed=removed, bytes_freed=freed)

    def delete_blobs_if_unreferenced(
        self, digests: Iterable[Digest], except_lease: object = None
    ) -> list[Digest]:
        """Delete those of ``digests`` nothing else keeps; returns the ones deleted.

        For undoing a failed operation: its blobs go only if no image references
        them and no live lease other than ``except_lease`` (the operation's own)
        holds them, checked and deleted under the exclusive GC lock, so a
        concurrent operation that found such a blob present and reused it keeps
        it. The grace period does not apply.
        """
        wanted = [d if isinstance(d, Digest) else Digest.parse(str(d)) for d in digests]
        if not wanted:
            return []
        removed: list[Digest] = []
        with file_lock(os.path.join(self.root, paths.GC_LOCK), exclusive=True):
            keep = self._mark(time.time(), except_lease=getattr(except_lease, "id", None))
            for digest in dict.fromkeys(wanted):
                if str(digest) in keep:
                    continue
                try:
                    os.unlink(paths.blob_path(self.root, digest))
                except FileNotFoundError:
                    continue
                removed.append(digest)
        return removed

    def _mark(self, now: float, except_lease: str | None = None) -> set[str]:
        """Every blob a root keeps; ``except_lease``'s own blob entries do not count."""
        with self.db.snapshot() as conn:
            images = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM images UNION SELECT image_id FROM containers "
                    "WHERE image_id IS NOT NULL UNION SELECT image_id FROM build_cache "
                    "UNION SELECT lr.ref FROM lease_resources lr JOIN leases l ON "
                    "l.id = lr.lease_id WHERE lr.kind = 'image' AND l.expires > ?",
                    (now,),
                )
            }
            keep: set[str] = set()
            for image_id in images:
                keep.update(image_blobs(conn, image_id))
            keep.update(
                r[0]
                for r in conn.execute(
                    "SELECT lr.ref FROM lease_resources lr JOIN leases l ON l.id = lr.lease_id "
                    "WHERE lr.kind = 'blob' AND l.expires > ? AND l.id IS NOT ?",
                    (now, except_lease),
                )
            )
        return keep

    def _drop_orphan_layers(self) -> None:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT chain_id, blob_digest FROM layers WHERE chain_id NOT IN "
                "(SELECT chain_id FROM image_layers)"
            ).fetchall()
            for chain_id, blob in rows:
                try:
                    present = os.path.exists(paths.blob_path(self.root, Digest.parse(blob)))
                except InvalidArgument:
                    present = False
                if not present:
                    conn.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))

    def fsck(self) -> list[str]:
        """Re-hash every blob and check every metadata reference; returns the problems."""
        problems: list[str] = []
        for digest in list(self.iter_blobs()):  # type: ignore[attr-defined]
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
            for chain_id, blob in conn.execute(
                "SELECT chain_id, blob_digest FROM layers WHERE chain_id IN "
                "(SELECT chain_id FROM image_layers)"
            ).fetchall():
                if not self._blob_ok(blob):
                    users = [
                        r[0]
                        for r in conn.execute(
                            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id=?",
                            (chain_id,),
                        )
                    ]
                    problems.append(
                        f"layer {chain_id}: blob {blob} is missing (used by {', '.join(users)})"
                    )
        return problems

    def _blob_ok(self, blob: str) -> bool:
        try:
            return os.path.isfile(paths.blob_path(self.root, Digest.parse(blob)))
        except InvalidArgument:
            return False


def image_blobs(conn, image_id: str) -> set[str]:  # type: ignore[no-untyped-def]
    out: set[str] = set()
    row = conn.execute(
        "SELECT manifest_digest, config_digest FROM images WHERE id=?", (image_id,)
    ).fetchone()
    if row is not None:
        out.update((row[0], row[1]))
    out.update(
        r[0]
        for r in conn.execute(
            "SELECT l.blob_digest FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id "
            "WHERE il.image_id=?",
            (image_id,),
        )
    )
    return out


def _hash_file(path: str, algorithm: str) -> Digest | None:
    digester = Digester(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digester.update(chunk)
    except FileNotFoundError:
        return None
    return digester.digest()
