"""Timestamps as images carry them (RFC 3339, nanoseconds allowed) <-> epoch seconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from kiln.util.timefmt import parse_go_duration


def parse_time(value: str | float | None) -> float | None:
    """An RFC 3339 string or epoch seconds -> epoch seconds; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:  # the usual form (``2024-01-02T03:04:05Z``) as it is, without the rewrites below
        dt = datetime.fromisoformat(value)
    except ValueError:
        return _parse_rewritten(value)
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def _parse_rewritten(value: str) -> float | None:
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


_DATE_FORMS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d")


def parse_duration(value: str) -> float | None:
    """A Go duration (``90s``, ``1h30m``, ``-2.5h``) -> seconds; None when it is not one."""
    nanos = parse_go_duration(value.strip())
    return None if nanos is None else nanos / 1e9


def parse_timestamp(value: str, now: float | None = None) -> float | None:
    """A filter time as Docker and podman take it -> epoch seconds; None when unreadable.

    A Go duration counts back from ``now`` (``10m`` is ten minutes ago); otherwise
    epoch seconds (``1700000000``, ``1700000000.5``), RFC 3339 with or without a
    zone (UTC then), or a date (``2024-01-02``).
    """
    v = value.strip()
    if not v:
        return None
    if v != "0":
        d = parse_duration(v)
        if d is not None:
            return (time.time() if now is None else now) - d
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return float(v)
    ts = parse_time(v)
    if ts is not None:
        return ts
    for form in _DATE_FORMS:
        try:
            return datetime.strptime(v, form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


__all__ = ["format_time", "parse_duration", "parse_time", "parse_timestamp"]
