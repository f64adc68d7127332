"""Golden table for Dockerfile shell-word expansion (kiln.build.lexer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.build.lexer import ShellLex
from kiln.errors import InvalidArgument

TABLE = Path(__file__).parent / "data" / "build" / "lexer_words.tsv"
DEFAULT_ENV = {"PWD": "/home", "SHELL": "bash", "NULL": ""}


def _rows() -> list[pytest.param]:
    rows = []
    for number, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        assert len(cols) in (3, 4), f"line {number}: {cols!r}"
        mode, word, expected = cols[:3]
        env = json.loads(cols[3]) if len(cols) == 4 else DEFAULT_ENV
        rows.append(pytest.param(mode, word, expected, env, id=f"L{number}:{word}"))
    return rows


ROWS = _rows()


def test_table_is_big_enough() -> None:
    assert len(ROWS) >= 80


@pytest.mark.parametrize(("mode", "word", "expected", "env"), ROWS)
def test_expansion(mode: str, word: str, expected: str, env: dict[str, str]) -> None:
    lex = ShellLex()
    run = lex.process_word if mode == "w" else lex.process_words
    if expected.startswith("!error"):
        with pytest.raises(InvalidArgument) as info:
            run(word, env)
        if expected.startswith("!error:"):
            assert str(info.value) == expected[len("!error:") :]
        return
    result = run(word, env)
    if mode == "w":
        assert result == expected
    else:
        assert result == json.loads(expected)
