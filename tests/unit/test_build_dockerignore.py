"""Ignore-file loading and directory pruning (kiln.build.dockerignore)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.build.dockerignore import (
    IgnoreMatcher,
    find_ignore_file,
    load_ignore_file,
    read_ignore_patterns,
)
from kiln.errors import InvalidArgument


def test_read_patterns_normalises() -> None:
    text = "\ufeff# comment\n\n  *.pyc  \n/abs/path\n./rel/../x\n! keep.me \n #not a comment\n"
    assert read_ignore_patterns(text) == ["*.pyc", "abs/path", "x", "!keep.me", "#not a comment"]


def test_bare_exclamation_is_illegal() -> None:
    with pytest.raises(InvalidArgument, match="illegal exclusion pattern"):
        IgnoreMatcher(["!"])


def test_prune_when_no_exception_below() -> None:
    m = IgnoreMatcher(["node_modules", "build", "!build/keep"])
    assert m.excludes_dir_entirely("node_modules")
    assert not m.excludes_dir_entirely("build")  # build/keep must survive
    assert m.matches("build/other") and not m.matches("build/keep")
    assert not m.excludes_dir_entirely("src")  # not excluded at all


def test_no_prune_with_doublestar_exception() -> None:
    m = IgnoreMatcher(["*", "!**/*.go"])
    assert not m.excludes_dir_entirely("vendor")
    assert m.matches("vendor/README") and not m.matches("vendor/x.go")


def test_prune_when_exception_elsewhere() -> None:
    m = IgnoreMatcher(["*", "!src/*.py"])
    assert m.excludes_dir_entirely("docs")
    assert not m.excludes_dir_entirely("src")


def _touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_ignore_file_order(tmp_path: Path) -> None:
    ctx = tmp_path
    assert find_ignore_file(str(ctx), "Dockerfile") is None
    assert load_ignore_file(str(ctx), "Dockerfile") == []
    _touch(ctx / ".dockerignore", "d\n")
    assert load_ignore_file(str(ctx), "Dockerfile") == ["d"]
    _touch(ctx / ".containerignore", "c\n")
    assert load_ignore_file(str(ctx), "Dockerfile") == ["c"]
    _touch(ctx / "sub" / "Containerfile.containerignore", "fc\n")
    assert load_ignore_file(str(ctx), "sub/Containerfile") == ["fc"]
    _touch(ctx / "sub" / "Containerfile.dockerignore", "fd\n")
    assert load_ignore_file(str(ctx), "sub/Containerfile") == ["fd"]
    absolute = str(ctx / "sub" / "Containerfile")
    assert find_ignore_file(str(ctx), absolute) == absolute + ".dockerignore"


# Patterns a hostile context may carry: stars that backtracked into one another took
# hours on these paths (holding the GIL of a kiln serve). A hang fails at the timeout.
DEEP = "/".join(["a"] * 2000)
LONG = "a" * 250
HOSTILE = [
    ("*a*a*a*a*a*a*b", LONG, False),
    ("*a*a*a*a*a*a*b", LONG + "b", True),
    ("**/**/**/**/**/**/**/b", DEEP, False),
    ("**/**/**/**/**/**/**/b", DEEP + "/b", True),
    ("**/a/**/a/**/a/**/b", DEEP, False),
    ("**/a/**/a/**/a/**/b", DEEP + "/x/b", True),
    ("**/*/**/*/**/*/**/*/x", DEEP, False),
    ("**/*a*a*a*a*a*b/**", f"{LONG}/{LONG}/{LONG}", False),
    ("**/*a*a*a*a*a*b/**", f"{LONG}/{LONG}b/{LONG}", True),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("pattern", "path", "excluded"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_patterns_that_backtracked_for_hours_decide_in_one_pass(pattern, path, excluded):
    matcher = IgnoreMatcher([pattern])
    assert matcher.matches(path) is excluded
    assert matcher.excludes_dir_entirely(path) is excluded


@pytest.mark.parametrize("name", [".dockerignore", "Containerfile.containerignore"])
def test_an_ignore_file_over_the_cap_is_refused_unread(tmp_path: Path, name: str) -> None:
    # a sparse file of 64 MiB (a hostile context's was 3 GB: read and split whole)
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    with open(tmp_path / name, "wb") as fh:
        fh.write(b"*.tmp\n")
        fh.truncate(64 * 1024 * 1024)
    with pytest.raises(InvalidArgument, match=f"ignore file .*{name} is over the 4 MiB limit"):
        load_ignore_file(str(tmp_path), str(tmp_path / "Containerfile"))
