"""Variable expansion of a hostile Dockerfile ends in bounded time and memory.

``ARG b=$a$a`` doubles a value at each line (a terabyte forty lines on): one word's
expansion is capped with a clear error. ``${a#*a*a*a*b}`` was a backtracking regex
tried at every prefix (hours on a few thousand characters, holding the GIL); the
shell patterns now match in linear time with the results the regex gave, which a
table of random patterns checks against Python's ``re`` on short values.
"""

from __future__ import annotations

import random
import re

import pytest

from kiln.build.lexer import MAX_EXPANSION, ShellLex
from kiln.errors import InvalidArgument

# Each of these took from minutes to hours before: a hang fails here, not in CI's limit.
pytestmark = pytest.mark.timeout(120)


def test_a_doubling_variable_is_refused_once_it_passes_the_cap():
    lex = ShellLex()
    env = {"a": "x" * 10}
    with pytest.raises(InvalidArgument, match=f"longer than {MAX_EXPANSION} characters"):
        for _ in range(40):
            env["a"] = lex.process_word("${a}${a}", env)
    assert MAX_EXPANSION // 2 < len(env["a"]) <= MAX_EXPANSION


@pytest.mark.parametrize(
    "word",
    ['"$a$a"', "x${a:-y}${a:+$a}", "${b:-$a$a}", "${a//x/xx}", "${a/x/$a}"],
)
def test_every_way_of_growing_a_word_is_capped(word):
    with pytest.raises(InvalidArgument, match="longer than"):
        ShellLex().process_word(word, {"a": "x" * (MAX_EXPANSION // 2 + 1)})


@pytest.mark.timeout(20)  # ~0.05 s now; 45 s and more when each character copied the word
def test_a_value_of_a_million_characters_expands_in_one_pass():
    # the word under construction was extended a character at a time (``self.word += ch``
    # on an attribute copies it): a 1 MB value took minutes
    value = "x" * MAX_EXPANSION
    assert ShellLex().process_words("$a", {"a": value}) == [value]
    spaced = "ab " * (MAX_EXPANSION // 3)
    assert ShellLex().process_words("-$a-", {"a": spaced}) == [
        "-ab",
        *["ab"] * (len(spaced) // 3 - 1),
        "-",
    ]


PATTERNS = {
    "${a#*a*a*a*a*b}": "a" * 20_000,
    "${a##*a*a*a*a*b}": "a" * 20_000,
    "${a%*a*a*a*a*b}": "a" * 20_000,
    "${a%%*a*a*a*a*b}": "a" * 20_000,
    "${a/*a*a*a*a*b/x}": "a" * 20_000,
    "${a//*a*a*a*a*b/x}": "a" * 20_000,
    "${a##*a*a?a}": "",
    "${a#a*a*a}": "a" * 19_997,
    "${a%%a*[a]}": "",
    "${a//a/b}": "b" * 20_000,
}


@pytest.mark.parametrize(("word", "expected"), PATTERNS.items(), ids=list(PATTERNS))
def test_patterns_that_backtracked_for_hours_match_in_one_pass(word, expected):
    assert ShellLex().process_word(word, {"a": "a" * 20_000}) == expected


def test_a_bad_character_class_is_a_clear_error():
    with pytest.raises(InvalidArgument, match=r"invalid pattern '\[z-a\]' in substitution"):
        ShellLex().process_word("${a#[z-a]}", {"a": "abc"})


# -- the results are the regex's ---------------------------------------------------------


def _regex(pattern: str) -> str:
    """The regex a shell pattern stands for (the former implementation)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch in "*?":
            out.append(".*" if ch == "*" else ".")
        elif (
            ch == "["
            and (end := pattern.find("]", i + 1 if pattern[i : i + 1] in "!^]" else i)) > 0
        ):
            body = pattern[i:end].replace("\\", "\\\\")  # a backslash is a member
            out.append("[" + ("^" + body[1:] if body[:1] in "!^" else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _reference(op: str, value: str, pattern: str, replacement: str) -> str:
    rx = re.compile(_regex(pattern), re.DOTALL)
    if op in ("/", "//"):
        return rx.sub(lambda _m: replacement, value, count=0 if op == "//" else 1)
    if op.startswith("#"):
        ends = range(len(value), -1, -1) if op == "##" else range(len(value) + 1)
        return next((value[e:] for e in ends if rx.fullmatch(value[:e])), value)
    starts = range(len(value) + 1) if op == "%%" else range(len(value), -1, -1)
    return next((value[:s] for s in starts if rx.fullmatch(value[s:])), value)


def _cases(n: int):
    rnd = random.Random(20261206)
    for _ in range(n):
        pattern = "".join(rnd.choice("ab*?[]^x\\") for _ in range(rnd.randint(0, 8)))
        pattern += "x" if pattern.endswith("\\") else ""  # not an escaped closing brace
        value = "".join(rnd.choice("abx\n") for _ in range(rnd.randint(0, 16)))
        yield rnd.choice(["#", "##", "%", "%%", "/", "//"]), value, pattern, rnd.choice(["", "R"])


def test_pattern_results_are_those_of_the_regex_they_stand_for():
    lex, compared = ShellLex(), 0
    for op, value, pattern, replacement in _cases(20_000):
        if op == "/" and not pattern:
            continue  # ``${v//R}`` would be a replace-all of R
        word = "${v" + op + pattern + ("/" + replacement if op in ("/", "//") else "") + "}"
        try:
            expected = _reference(op, value, pattern, replacement)
            got = lex.process_word(word, {"v": value})
        except re.error:
            continue  # the regex was no regex: kiln says so (the test above)
        except InvalidArgument as exc:
            # ``[!]`` or ``[^]``: as a regex, its ``]`` is a member and the class runs
            # on into the next piece; as a pattern it is refused
            assert "bad character class" in str(exc), (word, exc)
            continue
        assert got == expected, (word, value)
        compared += 1
    assert compared > 5_000
