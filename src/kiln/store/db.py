"""The store's database: kiln's one SQLite wrapper (:mod:`kiln.util.sqlite`)."""

from kiln.util.sqlite import BUSY_TIMEOUT_MS, Database, connect, migrate

__all__ = ["BUSY_TIMEOUT_MS", "Database", "connect", "migrate"]
