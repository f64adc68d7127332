"""Property: ignore patterns decide as a small reference model of Docker's rules does
(components matched like ``path.Match``, ``**`` for any number of directories, a pattern
that matches a directory matches what is below it, the last matching pattern wins, ``!``
re-includes), and a directory the walk may skip holds nothing that would be included."""

from __future__ import annotations

import fnmatch

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.build.dockerignore import IgnoreMatcher, read_ignore_patterns

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

NAMES = ["a", "b", "ab", "c", "abab"]
# "*a*b" and "**" between fixed components are matched through atomic groups (hostile
# patterns backtracked for hours): they must decide as the model does
pattern_part = st.sampled_from(
    ["a", "b", "ab", "*", "?", "a*", "*b", "**", "[ab]", "*a*b", "a*b*", "*a*"]
)
pattern = st.tuples(
    st.booleans(), st.sampled_from(["", "/", "./"]), st.lists(pattern_part, min_size=1, max_size=5)
).map(lambda t: ("!" if t[0] else "") + t[1] + "/".join(t[2]))
path = st.lists(st.sampled_from(NAMES), min_size=1, max_size=5).map("/".join)


def _match_parts(pat: list[str], parts: list[str], start: bool = True) -> bool:
    if not pat:
        return not parts
    if pat == ["**"] and not start:
        return bool(parts)  # a trailing "/**" needs something below (Docker's "/.*")
    if pat[0] == "**":
        return _match_parts(pat[1:], parts, start) or (
            bool(parts) and _match_parts(pat, parts[1:], start)
        )
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pat[0])
        and _match_parts(pat[1:], parts[1:], False)
    )


def _model(patterns: list[str], rel: str) -> bool:
    parts = rel.split("/")
    excluded = False
    for raw in patterns:
        invert = raw.startswith("!")
        pat = raw[1:] if invert else raw
        pat = pat.removeprefix("./").lstrip("/")
        pat_parts = pat.split("/")
        hit = any(_match_parts(pat_parts, parts[:depth]) for depth in range(1, len(parts) + 1))
        if hit:
            excluded = not invert
    return excluded


@SETTINGS
@given(patterns=st.lists(pattern, min_size=1, max_size=5), paths=st.lists(path, max_size=8))
@example(patterns=["a", "!a/b"], paths=["a", "a/b", "a/b/c", "a/c"])
@example(patterns=["**/b", "!a/**"], paths=["b", "a/b", "c/a/b"])
@example(patterns=["/a/*", "!./a/b"], paths=["a/b", "a/c"])
@example(patterns=["**/a/**/b"], paths=["a/a/b", "a/b/a/b", "b/a/c/b", "a/a/a"])
@example(patterns=["*a*b/**", "!**/a*b*/**/ab"], paths=["abab/c", "abab/a/ab", "ab/ab/ab"])
def test_matches_the_reference_model(patterns, paths):
    matcher = IgnoreMatcher(read_ignore_patterns("\n".join(patterns)))
    for rel in paths:
        assert matcher.matches(rel) == _model(patterns, rel), (patterns, rel)


@SETTINGS
@given(
    patterns=st.lists(pattern, max_size=4),
    last=st.lists(pattern_part, min_size=1, max_size=3).map("/".join),
    paths=st.lists(path, min_size=1, max_size=8),
)
def test_the_last_pattern_wins_and_bang_re_includes(patterns, last, paths):
    before = IgnoreMatcher(read_ignore_patterns("\n".join(patterns)))
    excluded = IgnoreMatcher(read_ignore_patterns("\n".join([*patterns, last])))
    included = IgnoreMatcher(read_ignore_patterns("\n".join([*patterns, "!" + last])))
    only = IgnoreMatcher([last])
    for rel in paths:
        if only.matches(rel):
            assert excluded.matches(rel) and not included.matches(rel), (patterns, last, rel)
        else:
            assert excluded.matches(rel) == before.matches(rel) == included.matches(rel)


@SETTINGS
@given(patterns=st.lists(pattern, min_size=1, max_size=5), directory=path, below=path)
def test_a_skipped_directory_holds_nothing_included(patterns, directory, below):
    matcher = IgnoreMatcher(read_ignore_patterns("\n".join(patterns)))
    if matcher.excludes_dir_entirely(directory):
        assert matcher.matches(f"{directory}/{below}"), (patterns, directory, below)
