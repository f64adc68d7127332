"""The embedded store: one directory holding blobs, the metadata database and snapshots.

    <root>/blobs/sha256/<hex>   verified content (also sha512)
    <root>/ingest/              blobs being written (temp; resumable by ref)
    <root>/kiln.db              SQLite metadata (WAL, foreign keys, schema version)
    <root>/gc.lock              flock: GC exclusive, blob publishing shared
    <root>/snapshots/           the Snapshotter's root (its own small database)
    <root>/cache-mounts/        RUN --mount=type=cache directories (``cache_mounts``)

Many processes may open one store at once; one ``Store`` object may be shared
by threads (each thread gets its own SQLite connection).

``Store`` is a thin facade, as containerd composes its services: it opens the one
``Database`` and composes small roles over it -- content (blobs: read, ingest, manage),
images (with names, layers and lineage), indexes (manifest lists), the resolver, working
containers, build cache, cache mounts, build records, leases, events and maintenance
(GC, fsck) -- each given the roles it needs in its constructor. Its methods are the
roles' own (``store.put_blob`` is ``store.content.put_blob``); new code may reach a role
as an attribute. The open leases travel in a ``ContextVar`` (``kiln.store.leases``).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from kiln.errors import Unavailable
from kiln.store import paths
from kiln.store.build_records import BuildRecords
from kiln.store.cache import BuildCache
from kiln.store.cache_mounts import CacheMounts
from kiln.store.containers import Containers
from kiln.store.content import Content
from kiln.store.db import Database
from kiln.store.events import Events
from kiln.store.gc import Maintenance
from kiln.store.images import Images
from kiln.store.indexes import Indexes
from kiln.store.leases import Leases
from kiln.store.lineage import Lineage
from kiln.store.resolve import Resolver
from kiln.store.schema import MIGRATIONS

T = TypeVar("T")


def unusable_root(root: str, exc: OSError | sqlite3.Error | None) -> Unavailable:
    """One line saying why ``root`` cannot hold a store (a file, read-only, not allowed;
    ``exc`` None: found not writable)."""
    if isinstance(exc, OSError):
        where = (exc.filename or root).rstrip("/") or "/"
        if exc.errno == errno.EEXIST:
            reason = f"{where} is not a directory"
        else:
            reason = f"{where}: {exc.strerror or exc}"
    elif exc is None or not os.access(root, os.W_OK):
        reason = f"{root} is not writable"
    else:
        reason = f"its database: {exc}"
    return Unavailable(
        f"cannot use {root} as the store root: {reason}; "
        "give a writable directory with --root or $KILN_ROOT"
    )


class _RoleAttr(Generic[T]):
    """A setting that lives on a role, read and set through the facade
    (``store.blob_grace_seconds = 0`` sets the GC role's)."""

    def __init__(self, role: str):
        self.role = role

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        return getattr(getattr(obj, self.role), self.name)

    def __set__(self, obj: Any, value: T) -> None:
        setattr(getattr(obj, self.role), self.name, value)


class Store:
    """The facade: opens the database and composes the roles, each a small class over it
    (reach them as ``store.content``, ``store.images``, ...). Its methods are the roles'
    own, bound at open, so ``store.put_blob`` is ``store.content.put_blob``."""

    #: blobs younger than this are never swept by GC (see kiln.store.gc)
    blob_grace_seconds = _RoleAttr[float]("maintenance")
    #: bounds of the build cache's ``--explain`` inputs and of the build records kept
    inputs_per_locator = _RoleAttr[int]("cache")
    inputs_max = _RoleAttr[int]("cache")
    inputs_max_bytes = _RoleAttr[int]("cache")
    build_records_max = _RoleAttr[int]("build_records")

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
        # a command that only reads writes nothing (not even SQLite's WAL), so a read-only
        # store would list fine and then fail at some command's first write, deep inside
        if not os.access(self.root, os.W_OK):
            raise unusable_root(self.root, None)
        try:
            self.db = Database(
                os.path.join(self.root, paths.DB_NAME), MIGRATIONS, f"the store at {self.root}"
            )
        except sqlite3.Error as exc:
            raise unusable_root(self.root, exc) from None
        self._compose()
        try:
            self.images.fill_layer_blobs()  # images stored before schema V3 (once; cheap afterwards)
            self.lineage.fill()  # and before V6
        except sqlite3.Error as exc:
            raise unusable_root(self.root, exc) from None

    def _compose(self) -> None:
        root, db = self.root, self.db
        # the roles, each given the roles it needs
        self.leases = leases = Leases(db)
        self.content = content = Content(root, db, leases)
        self.images = images = Images(root, db, leases)
        self.lineage = lineage = Lineage(root, db)
        self.indexes = indexes = Indexes(root, db, content)
        self.resolver = resolver = Resolver(db, images, indexes)
        self.containers = containers = Containers(db)
        self.cache = cache = BuildCache(root, db)
        self.cache_mounts = mounts = CacheMounts(root)
        self.build_records = records = BuildRecords(db)
        self.events = events = Events(db)
        self.maintenance = gc = Maintenance(root, db, content.iter_blobs)

        # content
        self.blob_path = content.blob_path
        self.has_blob = content.has_blob
        self.open_blob = content.open_blob
        self.blob_bytes = content.blob_bytes
        self.blob_size = content.blob_size
        self.ingest = content.ingest
        self.put_blob = content.put_blob
        self.put_bytes = content.put_bytes
        self.delete_blob = content.delete_blob
        self.iter_blobs = content.iter_blobs
        self.lease_existing_blob = content.lease_existing_blob
        self.sealed_bytes = content.sealed_bytes
        self.publish = content.publish
        # changes: whether anything was committed since (see Database.data_version)
        self.data_version = db.data_version
        # images, names, layers
        self.put_image = images.put_image
        self.get_image = images.get_image
        self.image_named = images.image_named
        self.set_image_labels = images.set_image_labels
        self.list_images = images.list_images
        self.image_count = images.image_count
        self.delete_image = images.delete_image
        self.tag = images.tag
        self.untag = images.untag
        self.names_of = images.names_of
        self.add_repo_digest = images.add_repo_digest
        self.remove_repo_digest = images.remove_repo_digest
        self.put_layer = images.put_layer
        self.put_layers = images.put_layers
        self.uncompressed_sizes = images.uncompressed_sizes
        self.chain_blobs = images.chain_blobs
        self.get_layer = images.get_layer
        self.list_layers = images.list_layers
        self.images_using_layer = images.images_using_layer
        self.parent_of = lineage.parent_of
        self.children_of = lineage.children_of
        self.parent_links = lineage.parent_links
        # manifest lists
        self.put_index = indexes.put_index
        self.get_index = indexes.get_index
        self.list_indexes = indexes.list_indexes
        self.index_count = indexes.index_count
        self.index_bytes = indexes.index_bytes
        self.delete_index = indexes.delete_index
        self.indexes_using = indexes.indexes_using
        self.tag_index = indexes.tag_index
        self.untag_index = indexes.untag_index
        self.resolve_index = indexes.resolve_index
        # names to images and lists
        self.resolve_image = resolver.resolve_image
        self.resolve = resolver.resolve
        # working containers
        self.put_container = containers.put_container
        self.get_container = containers.get_container
        self.find_container = containers.find_container
        self.list_containers = containers.list_containers
        self.delete_container = containers.delete_container
        self.containers_using = containers.containers_using
        # leases
        self.lease = leases.lease
        self.joined = leases.joined
        self.current_lease = leases.current
        self.clear_dead_leases = leases.clear_dead_leases
        self.list_leases = leases.list_leases
        self.delete_leases = leases.delete_leases
        self.leased_images = leases.leased_images
        # build cache and context checksums
        self.put_cache = cache.put_cache
        self.get_cache = cache.get_cache
        self.delete_cache = cache.delete_cache
        self.prune_cache = cache.prune_cache
        self.put_cache_inputs = cache.put_cache_inputs
        self.pack_cache_inputs = cache.pack_cache_inputs
        self.put_packed_cache_inputs = cache.put_packed_cache_inputs
        self.trim_cache_inputs = cache.trim_cache_inputs
        self.has_cache_inputs = cache.has_cache_inputs
        self.cache_inputs_candidates = cache.cache_inputs_candidates
        self.get_cache_inputs = cache.get_cache_inputs
        self.prune_cache_orphans = cache.prune_cache_orphans
        self.count_cache = cache.count_cache
        self.get_checksum = cache.get_checksum
        self.get_checksums = cache.get_checksums
        self.put_checksum = cache.put_checksum
        self.put_checksums = cache.put_checksums
        self.get_context_index = cache.get_context_index
        self.open_context_index = cache.open_context_index
        self.put_context_index = cache.put_context_index
        self.list_context_indexes = cache.list_context_indexes
        # cache mounts
        self.cache_mount_dir = mounts.cache_mount_dir
        self.cache_mount_lock = mounts.cache_mount_lock
        self.list_cache_mounts = mounts.list_cache_mounts
        self.cache_mount_users = mounts.cache_mount_users
        self.prune_cache_mounts = mounts.prune_cache_mounts
        # build records
        self.put_build_record = records.put_build_record
        self.list_build_records = records.list_build_records
        self.get_build_record = records.get_build_record
        self.delete_build_record = records.delete_build_record
        self.prune_build_records = records.prune_build_records
        # events
        self.record_event = events.record_event
        self.events_after = events.events_after
        self.last_event_id = events.last_event_id
        # GC and checks
        self.gc = gc.gc
        self.delete_blobs_if_unreferenced = gc.delete_blobs_if_unreferenced
        self.fsck = gc.fsck

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
