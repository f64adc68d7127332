"""The snapshotter's own small SQLite database (kiln's one wrapper, :mod:`kiln.util.sqlite`).

Tables: ``layers`` (chain id -> numeric dir, parent, diff id, flat, boot) and
``active`` (key -> numeric dir, parent, kind, driver). Numeric directory names
keep overlay option strings short. One connection per thread and process.

``layers.boot``: '' for a layer whose tree was durable before its row was recorded; else
the boot id (``boot_id``) of the boot that recorded it without waiting for the disk (an
unpacked layer, re-derivable from its blob). A process kill loses nothing written (the
page cache survives it); a power loss or kernel crash can, and it changes the boot id, so
a row marked with another boot's id is dropped when the snapshotter opens
(``Snapshotter._drop_torn``) and the next use unpacks the layer again.

``active.boot``: '' for a snapshot that outlives its process (a working container of
``kiln from``); else the boot id of the boot it was made in, for one that cannot outlive
that boot: a read-only view, or a build's container (``volatile``: its upper is written
without syncs and its process is gone after a reboot). ``_drop_torn`` drops those of
another boot, so they keep no torn layer alive.
"""

from __future__ import annotations

from kiln.util.sqlite import Database

#: where this boot's id is read; the one place tests point elsewhere to fake a reboot
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"

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
    """,
    # 2: layers recorded before their tree was durable (see the module docstring)
    """
    ALTER TABLE layers ADD COLUMN boot TEXT NOT NULL DEFAULT '';
    CREATE INDEX layers_not_durable ON layers(boot) WHERE boot != '';
    """,
    # 3: snapshots that cannot outlive the boot they were made in (see the module docstring)
    """
    ALTER TABLE active ADD COLUMN boot TEXT NOT NULL DEFAULT '';
    """,
]


def boot_id() -> str:
    """This boot's id (changes with every boot, so with every power loss or kernel crash);
    '' where the kernel does not say, and then nothing is recorded as not yet durable."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def open_meta(path: str) -> Database:
    """The snapshot database at ``path``, migrated to ``SCHEMA``."""
    return Database(path, SCHEMA, f"the snapshot database {path}")
