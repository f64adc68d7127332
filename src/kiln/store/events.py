"""The store's image event journal: what ``docker events`` / ``podman events`` report.

Every kiln process on a store (the CLI, ``kiln serve``, the varlink service) appends its
image events here (pull, push, tag, untag, delete, import, load, save, build), so a
listener sees the operations of all of them, as podman's file events backend lets every
podman process see the others'. The journal is a table with an increasing ID (the order
events were committed in) and keeps the newest :data:`EVENTS_KEPT` rows: each append drops
the row that many places back, so its size stays flat however long the store lives.
"""

from __future__ import annotations

import json
import time
from dataclasses import field

from kiln.store.db import Database
from kiln.util.lazy_dataclass import dataclass

EVENTS_KEPT = 10_000
_BATCH = 1_000


@dataclass(frozen=True)
class EventRecord:
    """One recorded store event."""

    id: int
    time_ns: int
    action: str
    image: str  # an image ID, or for pull and push the reference moved
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


class Events:
    """The event role: the image event journal."""

    def __init__(self, db: Database):
        self.db = db

    def record_event(
        self, action: str, image: str, name: str = "", attributes: dict[str, str] | None = None
    ) -> int:
        """Append one event (its time is now); returns its ID."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO events(time_ns, action, image, name, attributes) VALUES (?,?,?,?,?)",
                (time.time_ns(), action, image, name, json.dumps(attributes or {})),
            )
            new = int(cur.lastrowid or 0)
            if new > EVENTS_KEPT:
                conn.execute("DELETE FROM events WHERE id <= ?", (new - EVENTS_KEPT,))
        return new

    def events_after(
        self, after: int = 0, since_ns: int | None = None, limit: int = _BATCH
    ) -> list[EventRecord]:
        """Events with an ID above ``after`` (and a time at or after ``since_ns``), oldest
        first, at most ``limit``."""
        rows = self.db.query(
            "SELECT id, time_ns, action, image, name, attributes FROM events "
            "WHERE id > ? AND time_ns >= ? ORDER BY id LIMIT ?",
            (after, since_ns or 0, limit),
        )
        return [EventRecord(r[0], r[1], r[2], r[3], r[4], _attributes(r[5])) for r in rows]

    def last_event_id(self) -> int:
        row = self.db.one("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(row[0]) if row is not None else 0


def _attributes(text: str) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


__all__ = ["EVENTS_KEPT", "EventRecord", "Events"]
