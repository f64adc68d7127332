"""Unit tests for kiln.build.lexer beyond the golden table."""

from __future__ import annotations

import pytest

from kiln.build.lexer import ShellLex
from kiln.errors import InvalidArgument


def test_matches_report_only_set_names() -> None:
    value, used = ShellLex().process_word_with_matches("${A}-${B:-x}-$C", {"A": "1", "C": ""})
    assert value == "1-x-"
    assert used == {"A", "C"}


def test_expand_reports_missing_names() -> None:
    exp = ShellLex().expand("$A ${B:+y}", {"A": "a"})
    assert exp.missing == {"B"}
    assert exp.matched == {"A"}


def test_backtick_escape_leaves_backslash_literal() -> None:
    lex = ShellLex("`")
    assert lex.process_word(r"C:\path\$X", {"X": "x"}) == "C:\\path\\x"
    assert lex.process_word("a`$X", {"X": "x"}) == "a$X"
    assert lex.process_words("a` b c", {}) == ["a b", "c"]


def test_raw_quotes_keep_quotes() -> None:
    lex = ShellLex(raw_quotes=True)
    assert lex.process_word("'EOF'", {}) == "'EOF'"
    assert lex.process_word('"E"OF', {}) == '"E"OF'


def test_skip_unset_keeps_reference() -> None:
    lex = ShellLex(skip_unset=True)
    assert lex.process_word("$A ${B} ${C:-d}", {}) == "$A ${B} ${C:-d}"


def test_escape_must_be_one_character() -> None:
    with pytest.raises(InvalidArgument):
        ShellLex("ab")
