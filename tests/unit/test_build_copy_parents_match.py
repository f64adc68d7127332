"""COPY --parents source matching (pure): ``/./`` pivots and ``**``, over a fake tree."""

from __future__ import annotations

import stat

import pytest

from kiln.build.copy_parents import group_by_pivot, split_pivot
from kiln.container.paths import escape_meta, go_match, match_recursive
from kiln.errors import NotFound

TREE = {
    "": ["src", "x", "y", "ln"],
    "src": ["a.txt", "x", "b.go"],
    "src/x": ["b.txt", "y"],
    "src/x/y": ["c.txt"],
    "x": ["a.txt", "y"],
    "x/y": ["a.txt", "b.txt"],
    "y": ["a.txt"],
}
LINKS = {"ln"}  # a symlink to the root: ** must not loop through it


class _St:
    def __init__(self, mode: int):
        self.st_mode = mode


def lstat(rel: str):
    if rel in LINKS:
        return _St(stat.S_IFLNK | 0o777)
    if rel in TREE:
        return _St(stat.S_IFDIR | 0o755)
    parent, _, name = rel.rpartition("/")
    return _St(stat.S_IFREG | 0o644) if name in TREE.get(parent, []) else None


def listdir(rel: str) -> list[str]:
    if rel in LINKS:
        return TREE[""]
    if rel not in TREE:
        raise NotADirectoryError(rel)
    return TREE[rel]


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("./x/./y/*.txt", ("x", "y/*.txt")),
        ("x/a.txt", ("", "x/a.txt")),
        ("/./x", ("", "x")),
        ("a/./b/./c", ("a", "b/c")),  # the first /./ is the pivot
        ("../../x/./y", ("x", "y")),  # never above the root
    ],
)
def test_split_pivot(src, want):
    assert split_pivot(src) == want


def test_double_star_matches_any_depth_and_not_through_links():
    assert match_recursive("src/**/*.txt", lstat, listdir) == [
        "src/a.txt", "src/x/b.txt", "src/x/y/c.txt",
    ]  # fmt: skip
    assert match_recursive("**/c.txt", lstat, listdir) == ["src/x/y/c.txt"]
    assert match_recursive("src/**", lstat, listdir) == ["src"]  # a directory brings its tree
    assert match_recursive("*/a.txt", lstat, listdir) == ["src/a.txt", "x/a.txt", "y/a.txt"]


def test_groups_by_pivot():
    assert group_by_pivot(["./x/a.txt", "./y/a.txt"], lstat, listdir) == {
        "": ["x/a.txt", "y/a.txt"]
    }
    assert group_by_pivot(["./x/./y/*.txt", "src/./x"], lstat, listdir) == {
        "x": ["x/y/a.txt", "x/y/b.txt"],
        "src": ["src/x"],
    }
    # a wildcard matching nothing is fine beside a match; a missing plain path is not
    assert group_by_pivot(["x/a.txt", "x/*.none"], lstat, listdir) == {"": ["x/a.txt"]}
    with pytest.raises(NotFound, match="no such file"):
        group_by_pivot(["x/missing"], lstat, listdir)
    with pytest.raises(NotFound, match="match nothing"):
        group_by_pivot(["x/*.none"], lstat, listdir)


def test_escape_meta_matches_only_itself():
    name = "a[1]*?.txt"
    assert go_match(escape_meta(name), name)
    assert not go_match(escape_meta(name), "a1xx.txt")
