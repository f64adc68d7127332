"""kiln.ops.timefmt: image timestamps and the times filters take (durations, dates, epochs)."""

from __future__ import annotations

import pytest

from kiln.ops.timefmt import parse_duration, parse_time, parse_timestamp

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("-2m", -120), ("250ms", 0.25), ("0s", 0)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1d", "1h x", "--1h"])
def test_not_durations(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("10m", NOW - 600),
        ("1700000000", NOW),
        ("1699999999.5", NOW - 0.5),
        ("0", 0.0),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        ("2023-11-14T22:13:20.123456789Z", NOW + 0.123456),
        ("2023-11-14T22:13:20", NOW),
        ("2023-11-14", NOW - (22 * 3600 + 13 * 60 + 20)),
    ],
)
def test_filter_times(text, ts):
    assert parse_timestamp(text, now=NOW) == pytest.approx(ts)


@pytest.mark.parametrize("text", ["", "yesterday", "2023-13-01", "12:00"])
def test_unreadable_filter_times(text):
    assert parse_timestamp(text, now=NOW) is None


def test_parse_time_still_reads_image_times():
    assert parse_time("2023-11-14T22:13:20Z") == NOW
