"""Times as Go programs write and read them: RFC 3339 stamps and Go durations.

Image configs, history entries and manifest lists carry ``created`` as Go's
``time.RFC3339Nano`` prints it; HEALTHCHECK flags, ``--healthcheck-*`` and the
``until`` filters take Go durations (``1m30s``, ``500ms``, ``-2.5h``).
"""

from __future__ import annotations

import time

from kiln.util.lazy_pattern import lazy_pattern

_DURATION_PART = lazy_pattern(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
          "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip


def rfc3339(timestamp: float | None = None) -> str:
    """``2024-01-02T03:04:05.123456789Z`` in UTC, trailing zeros of the fraction trimmed
    as Go's RFC3339Nano does (``...:05Z`` for whole seconds); ``None`` is now."""
    ts = time.time() if timestamp is None else timestamp
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 10**9:  # rounding reached the next second
        whole, nanos = whole + 1, 0
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{base}.{nanos:09d}".rstrip("0").rstrip(".") + "Z"


_STAMP = lazy_pattern(r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


def as_rfc3339nano(stamp: str) -> str | None:
    """An RFC 3339 ``stamp`` as Go's ``time.RFC3339Nano`` prints the time it parses from it:
    the fraction's trailing zeros trimmed, a zero offset as ``Z``, any other offset kept
    (``2024-01-02T03:04:05.500+00:00`` -> ``2024-01-02T03:04:05.5Z``); None when it is
    not one Go would parse."""
    m = _STAMP().fullmatch(stamp)
    if m is None:
        return None
    date, clock, fraction, zone = m.groups()
    fraction = (fraction or "").rstrip("0")
    zone = "Z" if zone in ("Z", "z", "+00:00", "-00:00") else zone
    return f"{date}T{clock}" + (f".{fraction}" if fraction else "") + zone


def parse_go_duration(text: str) -> int | None:
    """Go's ``time.ParseDuration`` in nanoseconds (sign allowed, ``0`` needs no unit);
    None when ``text`` is not a duration."""
    sign = 1
    if text[:1] in ("+", "-") and text:
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    if text == "0":
        return 0
    if not text:
        return None
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART().match(text, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _NANOS[match.group(2)]
        pos = match.end()
    return sign * int(total)
