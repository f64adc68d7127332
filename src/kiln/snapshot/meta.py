"""The snapshotter's own small SQLite database (kiln's one wrapper, :mod:`kiln.util.sqlite`).

Tables: ``layers`` (chain id -> numeric dir, parent, diff id, flat) and
``active`` (key -> numeric dir, parent, kind, driver). Numeric directory names
keep overlay option strings short. One connection per thread and process.
"""

from __future__ import annotations

from kiln.util.sqlite import Database

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


def open_meta(path: str) -> Database:
    """The snapshot database at ``path``, migrated to ``SCHEMA``."""
    return Database(path, SCHEMA, f"the snapshot database {path}")
