"""A lazy pattern is compiled at its first use, once, and is the pattern ``re`` compiles."""

from __future__ import annotations

import re

from kiln.util.lazy_pattern import lazy_pattern


def test_the_pattern_is_compiled_at_its_first_use_and_only_then(monkeypatch):
    compiled = []
    real = re.compile

    def counting(pattern, flags=0):
        compiled.append(pattern)
        return real(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)
    port = lazy_pattern(r"^(\d+)(?:/([a-z]+))?$")
    assert compiled == []  # declaring it compiles nothing
    assert port().match("80/tcp").groups() == ("80", "tcp")
    assert port().match("x") is None
    assert port() is port()
    assert compiled == [r"^(\d+)(?:/([a-z]+))?$"]  # once


def test_flags_are_passed_on():
    secret = lazy_pattern(r"(?:_|^)key(?:_|$)", re.IGNORECASE)
    assert secret().flags & re.IGNORECASE
    assert secret().search("API_KEY")
