"""The snapshotter's own small SQLite database and its file locks.

Tables: ``layers`` (chain id -> numeric dir, parent, diff id, flat) and
``active`` (key -> numeric dir, parent, kind, driver). Numeric directory names
keep overlay option strings short. One connection per thread and process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.errors import NoSpace, Unavailable, is_no_space

SCHEMA = [
    """
    CREATE TABLE layers (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id TEXT NOT NULL UNIQUE,
        parent TEXT,
        diff_id TEXT NOT NULL DEFAULT '',
        flat INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE active (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        parent TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('rw', 'view')),
        driver TEXT NOT NULL CHECK (driver IN ('overlay', 'copy')),
        created REAL NOT NULL
    );
    """
]


class MetaDB:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        conn = self.conn
        # switching to WAL needs an exclusive lock that does not wait: only when needed
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(SCHEMA):
            raise Unavailable(
                f"the snapshot database {path} has schema version {version}, newer than this "
                f"kiln supports ({len(SCHEMA)}); upgrade kiln"
            )
        if version < len(SCHEMA):
            with self.transaction():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for i in range(version, len(SCHEMA)):
                    for stmt in SCHEMA[i].split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {len(SCHEMA)}")

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")  # a failed COMMIT may have rolled back already
            if is_no_space(exc):
                raise NoSpace.on(os.path.dirname(self.path)) from exc
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
