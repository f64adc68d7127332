"""The SQL statements a piece of work runs on a store's connection (this thread's).

from sql_trace import statements_during
seen = statements_during(store, lambda: store.tag(image, "x"))
"""

from __future__ import annotations

from collections.abc import Callable


def statements_during(store, work: Callable[[], object]) -> list[str]:
    """Every statement ``work`` runs on ``store``'s connection of the calling thread, in order."""
    seen: list[str] = []
    conn = store.db.conn
    conn.set_trace_callback(seen.append)
    try:
        work()
    finally:
        conn.set_trace_callback(None)
    return seen
