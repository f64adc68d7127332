"""Build records: one row per build, for ``kiln build history`` and ``kiln build report``.

A record is the build's own account of itself (``kiln.build.record`` writes it): the
Dockerfile, the options (never secret values), each step's times, cache facts and layer,
the warnings and the result. It is metadata only: it names images and blobs but holds
none of them, so GC, image removal and prune never read it, and an image it names may be
gone. The table is kept bounded: the newest ``build_records_max`` records stay.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument, NotFound
from kiln.store.db import Database
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuildRecordRow", "BuildRecords"]


@dataclass
class BuildRecordRow:
    """One row of the build records table."""

    id: str
    created: float
    ended: float
    status: str  # "completed" | "failed" | "cancelled"
    image_id: str = ""
    names: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # filled by get_build_record only


class BuildRecords:
    """The build-record role: one row per build."""

    def __init__(self, db: Database):
        self.db = db

    #: records kept; the oldest go when a new one is put
    build_records_max = 200

    def put_build_record(self, row: BuildRecordRow) -> None:
        blob = zlib.compress(json.dumps(row.record, sort_keys=True).encode("utf-8", "replace"))
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO build_records(id, created, ended, status, image_id, "
                "names, record) VALUES (?,?,?,?,?,?,?)",
                (row.id, row.created, row.ended, row.status, row.image_id,
                 "\n".join(row.names), blob),
            )  # fmt: skip
            conn.execute(
                "DELETE FROM build_records WHERE id NOT IN (SELECT id FROM build_records "
                "ORDER BY created DESC LIMIT ?)",
                (self.build_records_max,),
            )

    def list_build_records(self) -> list[BuildRecordRow]:
        """Every record, newest first, without the record body."""
        rows = self.db.query(
            "SELECT id, created, ended, status, image_id, names FROM build_records "
            "ORDER BY created DESC"
        )
        return [_row(r) for r in rows]

    def get_build_record(self, ref: str = "") -> BuildRecordRow:
        """A record by ID or unique ID prefix; ``""`` or ``"latest"``: the newest one."""
        if ref in ("", "latest"):
            rows = self.db.query("SELECT * FROM build_records ORDER BY created DESC LIMIT 1")
            if not rows:
                raise NotFound("no build records: build something first")
        else:
            if len(ref) < 3 or any(c not in "0123456789abcdef" for c in ref):
                raise NotFound(f"build record {ref!r} not known: give an ID or a prefix of one")
            rows = self.db.query(
                "SELECT * FROM build_records WHERE id >= ? AND id < ? LIMIT 2",
                (ref, ref + "g"),
            )
            if not rows:
                raise NotFound(f"build record {ref!r} not known: see `kiln build history ls`")
            if len(rows) > 1:
                raise InvalidArgument(f"build record prefix {ref!r} is ambiguous: give more of it")
        row = _row(rows[0])
        try:
            row.record = json.loads(zlib.decompress(rows[0]["record"]))
        except (zlib.error, ValueError):
            row.record = {}
        return row

    def delete_build_record(self, record_id: str) -> None:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM build_records WHERE id=?", (record_id,))
        if cur.rowcount == 0:
            raise NotFound(f"build record {record_id!r} not known")

    def prune_build_records(self, older_than: float = 0.0, keep: int = 0) -> int:
        """Delete records that ended more than ``older_than`` seconds ago, except the
        newest ``keep``; returns how many went."""
        cutoff = time.time() - older_than
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM build_records WHERE ended <= ? AND id NOT IN (SELECT id FROM "
                "build_records ORDER BY created DESC LIMIT ?)",
                (cutoff, keep),
            )
            return cur.rowcount


def _row(r: Any) -> BuildRecordRow:
    names = [n for n in (r["names"] or "").split("\n") if n]
    return BuildRecordRow(id=r["id"], created=r["created"], ended=r["ended"],
                          status=r["status"], image_id=r["image_id"], names=names)  # fmt: skip
