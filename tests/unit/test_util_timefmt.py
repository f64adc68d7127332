"""kiln.util.timefmt: the one home of Go's time formats (RFC 3339 stamps, durations)."""

from __future__ import annotations

import pytest

from kiln.util.timefmt import parse_go_duration, rfc3339


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1700000000, "2023-11-14T22:13:20Z"),
        (1700000000.5, "2023-11-14T22:13:20.5Z"),
        (1700000000.123456789, "2023-11-14T22:13:20.123456717Z"),  # a float's own digits
        (1700000000.9999999999, "2023-11-14T22:13:21Z"),  # rounds into the next second
    ],
)
def test_rfc3339_prints_as_go_rfc3339nano(ts, text):
    assert rfc3339(ts) == text


def test_rfc3339_defaults_to_now():
    assert rfc3339().startswith("20") and rfc3339().endswith("Z")


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("-0", 0),
        ("1s", 10**9),
        ("1m30s", 90 * 10**9),
        ("1.5h", 5400 * 10**9),
        (".5s", 5 * 10**8),
        ("500ms", 5 * 10**8),
        ("3us", 3000),
        ("3µs", 3000),  # MICRO SIGN
        ("3μs", 3000),  # GREEK SMALL LETTER MU
        ("-2.5h", -9000 * 10**9),
        ("+10m", 600 * 10**9),
    ],
)
def test_go_durations(text, nanos):
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "-", "1", "s", "1x", "1s ", "1d", "1s2", "--1s", "1.s.s"])
def test_not_go_durations(text):
    assert parse_go_duration(text) is None
