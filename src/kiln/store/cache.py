"""The build cache (step key -> image) and the stat-keyed context checksum cache."""

from __future__ import annotations

import os
import time

from kiln.store.db import Database


class CacheMixin:
    db: Database

    def put_cache(self, key: str, image_id: str) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO build_cache(key, image_id, created, last_used) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET image_id=excluded.image_id, "
                "last_used=excluded.last_used",
                (key, image_id, now, now),
            )

    def get_cache(self, key: str) -> str | None:
        row = self.db.one("SELECT image_id FROM build_cache WHERE key=?", (key,))
        if row is None:
            return None
        with self.db.transaction() as conn:
            conn.execute("UPDATE build_cache SET last_used=? WHERE key=?", (time.time(), key))
        return row[0]

    def delete_cache(self, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM build_cache WHERE key=?", (key,))

    def prune_cache(self, unused_for: float = 0.0) -> int:
        """Drop build-cache entries not used for ``unused_for`` seconds; returns how many."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM build_cache WHERE last_used <= ?", (time.time() - unused_for,)
            )
            return cur.rowcount

    def prune_cache_orphans(self) -> int:
        """Drop build-cache entries whose image is no longer in the store; returns how many."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM build_cache WHERE image_id NOT IN (SELECT id FROM images)"
            )
            return cur.rowcount

    def count_cache(self) -> int:
        """How many build-cache entries there are."""
        row = self.db.one("SELECT COUNT(*) FROM build_cache")
        return int(row[0]) if row is not None else 0

    def get_checksum(self, path: str, st: os.stat_result) -> str | None:
        row = self.db.one("SELECT * FROM checksum_cache WHERE path=?", (path,))
        if row is None or tuple(row)[1:7] != _stat_key(st):
            return None
        return row["digest"]

    def get_checksums(self, prefix: str) -> dict[str, tuple[tuple[int, ...], str]]:
        """Every cached checksum of a path under directory ``prefix``, in one query:
        ``{path: ((dev, ino, size, mtime_ns, ctime_ns, mode), digest)}``."""
        base = prefix.rstrip("/") + "/"
        rows = self.db.query(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, mode, digest FROM checksum_cache "
            "WHERE path >= ? AND path < ?",
            (base, base[:-1] + "0"),  # "0" sorts right after "/": the range is the subtree
        )
        return {r[0]: (tuple(r[1:7]), r[7]) for r in rows}

    def put_checksum(self, path: str, st: os.stat_result, digest: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO checksum_cache(path, dev, ino, size, mtime_ns, ctime_ns, "
                "mode, digest) VALUES (?,?,?,?,?,?,?,?)",
                (path, *_stat_key(st), digest),
            )


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
