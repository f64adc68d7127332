"""Leases: in-flight work protects what it creates from GC, as in containerd.

``with store.lease() as lease:`` opens a lease that lives until the block ends; its
row is written with the first thing that joins it (a lease holding nothing protects
nothing, so an operation that makes nothing, such as a fully cached build, writes none),
in that same transaction. If the process dies, the next kiln command clears it (``clear_dead_leases``, from the
lease's owner process), else it expires after ``ttl`` seconds. While it is open,
every blob ingested and every image put in the same context joins the lease in
the same transaction that makes it visible; ``add_blob``/``add_image`` add more
by hand. A leased image is a GC root and ``image prune`` leaves it alone.

The open leases travel in a ``contextvars.ContextVar``: a thread pool whose work belongs
to the operation runs each task in a copy of the submitting context
(``pool.submit(contextvars.copy_context().run, fn, ...)``), and the task's writes join the
same leases with no code of its own. A lease handed over explicitly (a library call's
``lease=``) is made current for a block with ``joined(lease)``. Leases are per store
(per database file): a lease of one store never joins writes to another.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kiln.store.db import Database
from kiln.store.gc import IMAGE_BLOBS_SQL
from kiln.util.held_signals import finish_held
from kiln.util.lazy_dataclass import dataclass
from kiln.util.process_owner import is_alive, this_process

#: the leases open in this context, innermost last (of every store: see ``Leases.open``)
_OPEN: ContextVar[tuple[_Open, ...]] = ContextVar("kiln_open_leases", default=())


class Lease:
    def __init__(self, db: Database, lease_id: str, created: float, expires: float):
        self._db = db
        self.id = lease_id
        self.created = created
        self.expires = expires
        self.written = False  # its row may exist: the first join wrote it (or rolled back)
        self._ensured_in: int | None = None  # the transaction that last wrote it

    def ensure_row(self, conn: sqlite3.Connection) -> None:
        """Write the lease's row and owner if not there yet, in the transaction of ``conn``
        (the joining write's: every join does, as a rolled-back first join leaves none).
        Once per transaction: a step's commit joins its blobs, its image and the image's
        blobs in one, which wrote the rows at the first join."""
        txn = self._db.transaction_id(conn)
        if txn is not None and txn == self._ensured_in:
            return
        conn.execute(
            "INSERT OR IGNORE INTO leases(id, created, expires) VALUES (?,?,?)",
            (self.id, self.created, self.expires),
        )
        conn.execute(
            "INSERT OR IGNORE INTO lease_owners(lease_id, owner) VALUES (?,?)",
            (self.id, this_process()),
        )
        self.written = True
        self._ensured_in = txn

    @property
    def database(self) -> str:
        """The database file of the store the lease belongs to."""
        return self._db.path

    def add_blob(self, digest: object) -> None:
        self._add("blob", str(digest))

    def add_image(self, image_id: str) -> None:
        """Keep the image and its blobs, even if the image is deleted meanwhile (two
        statements however many layers it has)."""
        with self._db.transaction() as conn:
            self._add("image", image_id)
            conn.execute(
                "INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) "
                f"SELECT ?2, 'blob', d FROM ({IMAGE_BLOBS_SQL}) WHERE d IS NOT NULL",
                (image_id, self.id),
            )

    def _add(self, kind: str, ref: str) -> None:
        with self._db.transaction() as conn:
            self.ensure_row(conn)
            conn.execute(
                "INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) VALUES (?,?,?)",
                (self.id, kind, ref),
            )


@dataclass(frozen=True)
class LeaseInfo:
    """One lease as ``kiln system leases`` lists it."""

    id: str
    created: float
    expires: float
    owner: str  # "PID:START", "" when not recorded
    alive: bool  # its owner process still runs (or none is recorded)
    images: int  # how many images and blobs it holds
    blobs: int

    @property
    def stale(self) -> bool:
        """Its owner is gone or it has expired: nothing will ever release it."""
        return not self.alive or self.expires <= time.time()


class _Open:
    """One ``_current`` block's place in ``_OPEN``: closed the moment the block ends."""

    __slots__ = ("closed", "lease")

    def __init__(self, lease: Lease):
        self.lease = lease
        self.closed = False


def _still_open() -> tuple[_Open, ...]:
    return tuple(entry for entry in _OPEN.get() if not entry.closed)


@contextmanager
def _current(lease: Lease) -> Iterator[None]:
    """``lease`` open in this context for the block (innermost)."""
    entry = _Open(lease)
    try:
        _OPEN.set((*_still_open(), entry))
        yield
    finally:
        # closed first, with no call before it that a Ctrl-C could land after: one that
        # kept the lease open in this context would have every later write join it and
        # write its row again. The copies of this context a pool's tasks run in see it
        # closed too (a task outliving the block would write the deleted row again)
        entry.closed = True
        _OPEN.set(_still_open())


class Leases:
    """The lease role: create, join, list and clear leases of one store's database."""

    def __init__(self, db: Database):
        self.db = db

    @contextmanager
    def lease(self, ttl: float = 3600) -> Iterator[Lease]:
        now = time.time()
        lease = Lease(self.db, uuid.uuid4().hex, now, now + ttl)  # its row: at its first join
        try:
            with _current(lease):
                yield lease
        finally:
            # held: a Ctrl-C inside the deletion's transaction would roll it back and leave
            # the lease holding what it held until this process ends
            if lease.written:
                finish_held(lambda: self._end(lease))

    def _end(self, lease: Lease) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM leases WHERE id=?", (lease.id,))

    @contextmanager
    def joined(self, lease: Lease | None) -> Iterator[None]:
        """Make the writes of this block join ``lease``, one handed over explicitly (a
        library call's ``lease=``). ``None`` joins nothing. Not needed on a pool's threads
        whose tasks run in a copy of the submitting context: they carry its leases."""
        if lease is None:
            yield
            return
        with _current(lease):
            yield

    def open(self) -> list[Lease]:
        """This store's leases open in this context, innermost last."""
        return [
            entry.lease
            for entry in _OPEN.get()
            if not entry.closed and entry.lease.database == self.db.path
        ]

    def current(self) -> Lease | None:
        """The innermost lease of this store open in this context, if any."""
        mine = self.open()
        return mine[-1] if mine else None

    def join_blobs(self, digests: Iterable[object], extra: object = None) -> None:
        """The blobs join the open leases and ``extra`` (a lease, maybe another context's),
        in the caller's transaction if there is one."""
        leases = self.open()
        if isinstance(extra, Lease) and extra not in leases:
            leases.append(extra)
        if not leases:
            return
        lease_ids = [lease.id for lease in leases]
        with self.db.transaction() as conn:
            for lease in leases:
                lease.ensure_row(conn)
            conn.execute(
                "INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) "
                "SELECT l.value, 'blob', d.value FROM json_each(?) l, json_each(?) d",
                (json.dumps(lease_ids), json.dumps([str(d) for d in digests])),
            )

    def join_image(self, image_id: str) -> None:
        """``image_id`` joins the open leases (inside the caller's transaction)."""
        for lease in self.open():
            lease.ensure_row(self.db.conn)
            self.db.execute(
                "INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) VALUES (?,'image',?)",
                (lease.id, image_id),
            )

    def clear_dead_leases(self) -> int:
        """Delete the leases of processes that are gone (a killed kiln's) and the expired
        ones; returns how many of the first kind there were."""
        rows = self.db.query("SELECT lease_id, owner FROM lease_owners")
        dead = [r[0] for r in rows if not is_alive(r[1])]
        now = time.time()
        if not dead and self.db.one("SELECT 1 FROM leases WHERE expires <= ?", (now,)) is None:
            return 0  # the common case: no write at all
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM leases WHERE id=?", [(i,) for i in dead])
            conn.execute("DELETE FROM leases WHERE expires <= ?", (now,))
        return len(dead)

    def list_leases(self) -> list[LeaseInfo]:
        """Every lease, oldest first, with its owner and what it holds."""
        rows = self.db.query(
            "SELECT l.id, l.created, l.expires, COALESCE(o.owner, '') AS owner, "
            "(SELECT COUNT(*) FROM lease_resources r WHERE r.lease_id=l.id AND r.kind='image'), "
            "(SELECT COUNT(*) FROM lease_resources r WHERE r.lease_id=l.id AND r.kind='blob') "
            "FROM leases l LEFT JOIN lease_owners o ON o.lease_id = l.id ORDER BY l.created, l.id"
        )
        return [
            LeaseInfo(r[0], r[1], r[2], r[3], not r[3] or is_alive(r[3]), r[4], r[5]) for r in rows
        ]

    def delete_leases(self, lease_ids: list[str]) -> int:
        """Delete these leases (stale ones a check found); returns how many there were."""
        gone = 0
        with self.db.transaction() as conn:
            for lease_id in lease_ids:
                gone += conn.execute("DELETE FROM leases WHERE id=?", (lease_id,)).rowcount
        return gone

    def leased_images(self) -> set[str]:
        """IDs of the images an unexpired lease holds (work in flight, e.g. a build step)."""
        rows = self.db.query(
            "SELECT lr.ref FROM lease_resources lr JOIN leases l ON l.id = lr.lease_id "
            "WHERE lr.kind = 'image' AND l.expires > ?",
            (time.time(),),
        )
        return {r[0] for r in rows}


__all__ = ["Lease", "LeaseInfo", "Leases"]
