"""kiln's one SQLite wrapper, for the store's database and the snapshotter's: one
connection per thread (and per process after fork), WAL, foreign keys, a busy
timeout, temporary data in memory, numbered migrations (a newer database is
refused), ``BEGIN IMMEDIATE`` write transactions that nest by joining the
outermost one, and a full disk reported as ``NoSpace`` naming the directory.

Closing a ``Database`` makes its commits durable. In a process that ends right after its
command (the console script, see :func:`leave_wal_at_exit`) that is one fsync of the WAL,
and only when the process committed something; the connections are left to the process's
exit, so SQLite does not checkpoint the WAL into the database file at their close. The next
command appends to the same WAL: no WAL made, synced and deleted, no database file written
and synced, per command (a build paid eight syncs for it, and a read-only command made and
deleted the WAL and its index). SQLite still checkpoints when the WAL passes
``wal_autocheckpoint`` pages, and a process that leaves its connections open is what
SQLite's recovery handles after every killed command."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kiln.errors import KilnError, NoSpace, Unavailable, is_no_space

BUSY_TIMEOUT_MS = 60_000
SQLITE_BUSY = 5
#: the WAL is checkpointed into the database file once it holds this many pages (4 KiB each)
WAL_AUTOCHECKPOINT_PAGES = 256
#: numbers the write transactions of every Database (``Database.transaction_id``)
_transaction_ids = itertools.count(1)
#: see :func:`leave_wal_at_exit`
_leave_wal = False
#: the connections closed Databases left for the process's exit to close
_left_open: list[sqlite3.Connection] = []


def leave_wal_at_exit() -> None:
    """For a process that ends right after its command (the console script): from now on
    ``Database.close`` syncs the WAL (when this process committed to it) and leaves the
    connections for the process's exit to close, without SQLite's checkpoint at close."""
    global _leave_wal
    _leave_wal = True


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    # statement journals and temporary b-trees in memory: a multi-row INSERT in a
    # transaction (an image's layer rows, every build step) otherwise spills its
    # statement journal into a file made, written and unlinked in /var/tmp each time
    conn.execute("PRAGMA temp_store = MEMORY")
    # a command's first connection reads all of the WAL its predecessors left (SQLite's
    # recovery of the WAL's index: ~2.5 ms of CPU for SQLite's default of 1,000 pages, an
    # import and a tiny build leave ~190): checkpointed past 1 MiB instead
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    return conn


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is SQLite giving up on a lock another
    connection holds (``SQLITE_BUSY``: "database is locked") after the busy timeout."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short cause chain; never a cycle
        if seen is None:
            return False
        if isinstance(seen, sqlite3.OperationalError):
            code = getattr(seen, "sqlite_errorcode", None)
            if code is not None:
                return bool(code & 0xFF == SQLITE_BUSY)
            return "database is locked" in str(seen)
        seen = seen.__cause__ or seen.__context__
    return False


#: the parameters of one statement
Params = tuple[Any, ...] | list[Any]


def migrate(conn: sqlite3.Connection, migrations: list[str], what: str) -> int:
    """Bring ``conn``'s database to ``len(migrations)``; refuse a newer one. Idempotent.
    Returns how many migrations this call applied."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    target = len(migrations)
    applied = 0
    while True:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > target:
            raise Unavailable(
                f"{what} has schema version {version}, but this kiln only knows versions up to "
                f"{target}: it was written by a newer kiln; upgrade kiln to use it"
            )
        if version == target:
            return applied
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            current: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == version:
                for stmt in _statements(migrations[version]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                applied += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


class Database:
    """Thread-safe handle: each thread (and each forked process) gets its own connection.
    A thread's connection is closed once the thread has ended, when another one opens its
    own: a script or server starting a thread for each call keeps a bounded number open."""

    def __init__(self, path: str, migrations: list[str], what: str):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._owners: dict[sqlite3.Connection, tuple[threading.Thread, int]] = {}  # thread, pid
        self._lock = threading.Lock()
        self._closed = False
        #: whether this process wrote to the database beyond the ``total_changes`` of the
        #: connections held: by a migration (schema changes are not counted) or through an
        #: ended thread's connection, closed since
        self._wrote = migrate(self.conn, migrations, what) > 0

    @property
    def conn(self) -> sqlite3.Connection:
        if self._closed:
            raise KilnError(f"the database {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            pid = os.getpid()
            conn = connect(self.path)
            self._local.conn, self._local.pid, self._local.depth = conn, pid, 0
            with self._lock:  # a parent's connections (after a fork) are left as they are
                ended = [c for c, (t, p) in self._owners.items() if p == pid and not t.is_alive()]
                for old in ended:
                    self._all.remove(old)
                    del self._owners[old]
                    self._wrote = self._wrote or old.total_changes > 0
                self._all.append(conn)
                self._owners[conn] = (threading.current_thread(), pid)
            for old in ended:
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        return conn

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def set_busy_timeout(self, ms: int) -> None:
        """How long this thread's connection waits for a lock another connection holds
        before a statement fails as busy (:func:`is_busy`); other threads keep
        ``BUSY_TIMEOUT_MS``."""
        self.conn.execute(f"PRAGMA busy_timeout = {max(0, int(ms))}")

    def set_mmap_size(self, size: int) -> None:
        """Let this thread's connection read the database file through a memory mapping
        of up to ``size`` bytes (the kernel's page cache, shared) instead of a ``pread``
        into its own small page cache for each page it misses."""
        self.conn.execute(f"PRAGMA mmap_size = {max(0, int(size))}")

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on this thread's connection: it differs from
        what the same connection said before exactly when another connection, of this
        process or another, committed a change in between. The connection's own commits
        leave it as it is: only a connection that never writes sees every change by it."""
        return int(self.value("PRAGMA data_version"))

    def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the one row an aggregate or PRAGMA always returns."""
        return self.execute(sql, params).fetchone()[0]

    def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    @property
    def in_transaction(self) -> bool:
        _ = self.conn
        return bool(self._local.depth > 0)

    def transaction_id(self, conn: sqlite3.Connection | None = None) -> int | None:
        """A number for the write transaction this thread is in (the outermost
        ``transaction()``), unique in the process, or None outside one: what a write did
        earlier in the same transaction is still there, while one rolled back is not. A read
        view (``snapshot``) has none; nor has ``conn`` when it is not this thread's
        connection to this database. Opens no connection."""
        local = self._local
        mine = getattr(local, "conn", None)
        if mine is None or local.pid != os.getpid() or not local.depth:
            return None
        if conn is not None and conn is not mine:
            return None
        return getattr(local, "txn", None)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; a nested call joins the outer transaction."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        # BEGIN inside the ``try``: a Ctrl-C just after it (a signal raises between any two
        # bytecodes) would leave the connection in a transaction no later call could start
        try:
            self._local.depth, self._local.txn = 1, next(_transaction_ids)
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")  # a failed COMMIT may have rolled back already
            if is_no_space(exc):
                raise NoSpace.on(os.path.dirname(self.path)) from exc
            raise
        finally:
            self._local.depth, self._local.txn = 0, None

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A consistent read view (a deferred read transaction), unless already in one."""
        conn = self.conn
        if self._local.depth:
            yield conn
            return
        try:
            self._local.depth = 1
            conn.execute("BEGIN")
            yield conn
        finally:
            self._local.depth = 0
            # not ``contextlib.suppress``: a Ctrl-C just after it returned would skip the
            # COMMIT and leave the connection in a read transaction no later one could begin
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError:  # interrupted before BEGIN
                pass

    def close(self) -> None:
        """Close every connection: SQLite checkpoints the WAL into the database file at the
        last one's close (the commits made durable). After :func:`leave_wal_at_exit`, the
        WAL is synced instead, when a connection of this process changed the database, and
        the connections are left to the process's exit."""
        with self._lock:
            conns, self._all, self._owners = self._all, [], {}
            self._closed = True
        if _leave_wal:
            if self._wrote or any(conn.total_changes for conn in conns):
                _sync_file(self.path + "-wal")
            _left_open.extend(conns)
            return
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass


def _sync_file(path: str) -> None:
    """fsync ``path`` if it exists (SQLite made the WAL's directory entry durable itself,
    when it first synced a new WAL)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
