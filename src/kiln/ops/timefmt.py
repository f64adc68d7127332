"""Timestamps as images carry them (RFC 3339, nanoseconds allowed) <-> epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: str | float | None) -> float | None:
    """An RFC 3339 string or epoch seconds -> epoch seconds; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    v = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in v:  # fromisoformat takes at most microseconds
        head, _, tail = v.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        tz = tail[len(digits) :]
        v = f"{head}.{(digits + '000000')[:6]}{tz}"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def format_time(ts: float) -> str:
    """Epoch seconds -> ``2024-01-02T03:04:05Z`` (UTC, whole seconds)."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["format_time", "parse_time"]
