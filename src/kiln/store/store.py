"""The embedded store: one directory holding blobs, the metadata database and snapshots.

    <root>/blobs/sha256/<hex>   verified content (also sha512)
    <root>/ingest/              blobs being written (temp; resumable by ref)
    <root>/kiln.db              SQLite metadata (WAL, foreign keys, schema version)
    <root>/gc.lock              flock: GC exclusive, blob publishing shared
    <root>/snapshots/           the Snapshotter's root (its own small database)
    <root>/cache-mounts/        RUN --mount=type=cache directories (``cache_mounts``)

Many processes may open one store at once; one ``Store`` object may be shared
by threads (each thread gets its own SQLite connection).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.errors import Unavailable
from kiln.store import paths
from kiln.store.build_records import BuildRecordsMixin
from kiln.store.cache import CacheMixin
from kiln.store.cache_mounts import CacheMountsMixin
from kiln.store.containers import ContainersMixin
from kiln.store.content import ContentMixin
from kiln.store.db import Database
from kiln.store.events import EventsMixin
from kiln.store.gc import DEFAULT_BLOB_GRACE, MaintenanceMixin
from kiln.store.images import ImagesMixin
from kiln.store.indexes import IndexesMixin
from kiln.store.leases import LeaseMixin
from kiln.store.lineage import LineageMixin
from kiln.store.resolve import ResolveMixin
from kiln.store.schema import MIGRATIONS


def unusable_root(root: str, exc: OSError | sqlite3.Error) -> Unavailable:
    """One line saying why ``root`` cannot hold a store (a file, read-only, not allowed)."""
    if isinstance(exc, OSError):
        where = (exc.filename or root).rstrip("/") or "/"
        if exc.errno == errno.EEXIST:
            reason = f"{where} is not a directory"
        else:
            reason = f"{where}: {exc.strerror or exc}"
    elif not os.access(root, os.W_OK):
        reason = f"{root} is not writable"
    else:
        reason = f"its database: {exc}"
    return Unavailable(
        f"cannot use {root} as the store root: {reason}; "
        "give a writable directory with --root or $KILN_ROOT"
    )


class Store(
    ContentMixin,
    ImagesMixin,
    IndexesMixin,
    LineageMixin,
    ResolveMixin,
    ContainersMixin,
    LeaseMixin,
    CacheMixin,
    CacheMountsMixin,
    BuildRecordsMixin,
    MaintenanceMixin,
    EventsMixin,
):
    #: blobs younger than this are never swept by GC (see kiln.store.gc)
    blob_grace_seconds: float = DEFAULT_BLOB_GRACE

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        try:
            for sub in (
                "",
                paths.BLOBS,
                os.path.join(paths.BLOBS, "sha256"),
                paths.INGEST,
                paths.SNAPSHOTS,
            ):
                os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise unusable_root(self.root, exc) from None
        self._lease_local = threading.local()
        try:
            self.db = Database(
                os.path.join(self.root, paths.DB_NAME), MIGRATIONS, f"the store at {self.root}"
            )
            self._fill_layer_blobs()  # images stored before schema V3 (once; cheap afterwards)
            self._fill_lineage()  # and before V6
        except sqlite3.Error as exc:
            raise unusable_root(self.root, exc) from None

    @classmethod
    def open(cls, root: str | None = None) -> Store:
        """Open (creating if needed) the store at ``root`` or the default location."""
        return cls(root or paths.default_root())

    @property
    def snapshot_root(self) -> str:
        """Where the Snapshotter for this store keeps its files."""
        return os.path.join(self.root, paths.SNAPSHOTS)

    @property
    def schema_version(self) -> int:
        return int(self.db.value("PRAGMA user_version"))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; nested calls join the outermost one."""
        with self.db.transaction():
            yield

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.root!r})"
