"""Credentials in URLs and references are masked in what kiln prints (kiln.util.redact)."""

from __future__ import annotations

import logging

import pytest

from kiln.util.redact import RedactingFilter, redact

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, expected",
    [
        ("https://alice:s3cret@reg.example/x", "https://alice:***@reg.example/x"),
        ("alice:s3cret@127.0.0.1:5000/x:1", "alice:***@127.0.0.1:5000/x:1"),
        ("pulling alice:s3cret@reg.example/x failed", "pulling alice:***@reg.example/x failed"),
        ("https://ghp_TOKEN@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("ADD http://u:p@h/f /f", "ADD http://u:***@h/f /f"),
        ("a:b@c and http://d:e@f/", "a:***@c and http://d:***@f/"),
        # left alone: no secret in them
        (f"busybox:latest@{DIGEST}", f"busybox:latest@{DIGEST}"),
        (f"reg.example:5000/x@{DIGEST}", f"reg.example:5000/x@{DIGEST}"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("mail user@example.com", "mail user@example.com"),
        ("https://alice:***@h/x", "https://alice:***@h/x"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_logging_filter_redacts_args_and_url_encoded_queries(caplog):
    logger = logging.getLogger("kiln.test.redact")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("fetching %s", "https://alice:s3cret@h/x")
        logger.warning("GET /images/create?fromImage=alice%3As3cret%40reg.example%2Fx")
    finally:
        logger.removeHandler(handler)
    assert records and not any("s3cret" in r for r in records), records
