"""Golden table for .dockerignore matching (kiln.build.dockerignore)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.build.dockerignore import IgnoreMatcher

TABLE = Path(__file__).parent / "data" / "build" / "dockerignore.tsv"


def _rows() -> list[pytest.param]:
    rows = []
    for number, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        patterns, path, expected = line.split("\t")
        assert expected in ("true", "false"), f"line {number}"
        rows.append(
            pytest.param(json.loads(patterns), path, expected == "true", id=f"L{number}:{path}")
        )
    return rows


ROWS = _rows()


def test_table_is_big_enough() -> None:
    assert len(ROWS) >= 50


@pytest.mark.parametrize(("patterns", "path", "expected"), ROWS)
def test_matches(patterns: list[str], path: str, expected: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is expected
