"""Working containers: a unique name, the image they started from, the snapshot they hold
(both GC roots), opaque JSON state."""

from __future__ import annotations

import json
import re
import sqlite3

from kiln.errors import AlreadyExists, InvalidArgument, NotFound
from kiln.store.db import Database
from kiln.store.records import ContainerRecord

_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_PREFIX_RE = re.compile(r"^[a-f0-9]{1,63}$")


class Containers:
    """The container role: working containers' rows."""

    def __init__(self, db: Database):
        self.db = db

    def put_container(self, rec: ContainerRecord) -> None:
        """Insert or update; a name another container holds is ``AlreadyExists``."""
        if not _ID_RE.match(rec.id):
            raise InvalidArgument(f'container ID "{rec.id}" must be 64 lowercase hex digits')
        if not rec.name:
            raise InvalidArgument("a container needs a name")
        state = json.dumps(rec.state, sort_keys=True, separators=(",", ":"))
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name=?", (rec.name,)).fetchone()
            if row is not None and row[0] != rec.id:
                raise AlreadyExists(
                    f'the container name "{rec.name}" is already in use by {row[0][:12]}; '
                    "remove that container or choose another name"
                )
            if rec.image_id is not None and (
                conn.execute("SELECT 1 FROM images WHERE id=?", (rec.image_id,)).fetchone() is None
            ):
                raise NotFound(f"{rec.image_id}: image not known")
            conn.execute(
                "INSERT INTO containers(id, name, image_id, state, created, snapshot_key) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name, "
                "image_id=excluded.image_id, state=excluded.state, "
                "snapshot_key=excluded.snapshot_key",
                (rec.id, rec.name, rec.image_id, state, rec.created, rec.snapshot_key),
            )

    def get_container(self, container_id: str) -> ContainerRecord:
        row = self.db.one("SELECT * FROM containers WHERE id=?", (container_id,))
        if row is None:
            raise NotFound(f"{container_id}: no such container")
        return _from_row(row)

    def find_container(self, name_or_id_or_prefix: str) -> ContainerRecord:
        """By full ID, then exact name, then unique ID prefix."""
        value = name_or_id_or_prefix
        row = self.db.one("SELECT * FROM containers WHERE id=?", (value,))
        if row is None:
            row = self.db.one("SELECT * FROM containers WHERE name=?", (value,))
        if row is None and _PREFIX_RE.match(value):
            rows = self.db.query(
                "SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 1000",
                (value, value + "g"),
            )
            if len(rows) > 1:
                raise InvalidArgument(
                    f"{value}: ambiguous container ID prefix: it matches {len(rows)} containers; "
                    "give more characters of the ID"
                )
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"{value}: no such container")
        return _from_row(row)

    def list_containers(self) -> list[ContainerRecord]:
        return [_from_row(r) for r in self.db.query("SELECT * FROM containers ORDER BY created")]

    def delete_container(self, container_id: str) -> None:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM containers WHERE id=?", (container_id,))
            if cur.rowcount == 0:
                raise NotFound(f"{container_id}: no such container")

    def containers_using(self, image_id: str) -> list[ContainerRecord]:
        rows = self.db.query(
            "SELECT * FROM containers WHERE image_id=? ORDER BY created", (image_id,)
        )
        return [_from_row(r) for r in rows]


def _from_row(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(
        id=row["id"],
        name=row["name"],
        image_id=row["image_id"],
        state=json.loads(row["state"]),
        created=row["created"],
        snapshot_key=row["snapshot_key"],
    )
