"""Docker COPY/ADD path rules: Go filepath.Match wildcards, context confinement, destinations."""

from __future__ import annotations

import os

import pytest

from kiln.archive.safe_root import SafeRoot
from kiln.container.paths import clean_source, expand_source, go_match, resolve_dest
from kiln.errors import InvalidArgument, NotFound


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", ".txt", True),
        ("*.txt", "a.txt.bak", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("[ab-]", "-", False),  # Go: '-' may not end a class unescaped -> bad pattern
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("*", "", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXbYY", False),
    ],
)
def test_go_match(pattern, name, matches):
    if pattern == "[ab-]":
        with pytest.raises(InvalidArgument):
            go_match(pattern, name)
        return
    assert go_match(pattern, name) is matches


@pytest.mark.parametrize("bad", ["[", "[a", "a\\", "[]"])
def test_go_match_bad_pattern(bad):
    with pytest.raises(InvalidArgument, match="malformed"):
        go_match(bad, "a")


def test_clean_source_stays_in_the_context():
    assert clean_source("/a/b/../c") == "a/c"
    assert clean_source(".") == ""
    assert clean_source("./x/") == "x"
    # as buildah and BuildKit: ``..`` is cleaned against the context as if it were /
    assert clean_source("..") == ""
    assert clean_source("../x") == "x"
    assert clean_source("a/../../x") == "x"
    assert clean_source("//../../etc/passwd") == "etc/passwd"


def test_resolve_dest():
    assert resolve_dest("app/", "/srv") == ("/srv/app", True)
    assert resolve_dest("file", "/srv") == ("/srv/file", False)
    assert resolve_dest("/abs/.", "/w") == ("/abs", True)
    assert resolve_dest(".", "/w") == ("/w", True)
    assert resolve_dest("/", "/w") == ("/", True)
    with pytest.raises(InvalidArgument):
        resolve_dest("", "/")


def test_expand_source(tmp_path):
    for rel in ("a.txt", "b.txt", "c.md", "sub/x.txt", "sub/y.md"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    os.symlink("/etc", tmp_path / "escape")
    with SafeRoot(str(tmp_path)) as root:
        assert expand_source(root, "*.txt") == ["a.txt", "b.txt"]
        assert expand_source(root, "*/*.md") == ["sub/y.md"]
        assert expand_source(root, "sub") == ["sub"]
        assert expand_source(root, ".") == [""]
        with pytest.raises(NotFound):
            expand_source(root, "nope")
        with pytest.raises(NotFound):
            expand_source(root, "*.none")
        # a symlink out of the context resolves inside it: /etc of the context is absent
        with pytest.raises(NotFound):
            expand_source(root, "escape/passwd")


@pytest.mark.timeout(60)  # these backtracked for hours (a 120-character name: 7 s)
@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*a*a*a*a*a*b", "a" * 255, False),
        ("*a*a*a*a*a*b", "a" * 254 + "b", True),
        ("*a?a*[ab]*a*[^b]", "a" * 255, True),
        ("*a*a*a*a*a*[^a]", "a" * 255, False),
    ],
    ids=["no match", "match", "classes match", "classes no match"],
)
def test_go_match_of_a_hostile_pattern_is_one_pass(pattern, name, matches):
    assert go_match(pattern, name) is matches
