"""``COPY --from --exclude`` without a ``!`` pattern decides each path as the copy meets it
(kiln.build.copy_from_exclude): it must keep exactly what the context's filtered walk
(``BuildContext.included``) keeps below the sources, which walks the whole tree first."""

from __future__ import annotations

import os

import pytest

from kiln.build.context import BuildContext
from kiln.build.copy_from_exclude import from_included
from kiln.errors import NotFound

FILES = [
    "src/a.txt", "src/b.log", "src/app.log", "src/owned/setuid", "src/owned/deep/x.bin",
    "src/owned/deep/y.txt", "src/logs/today.log", "src/logs/keep.txt", "other/a.txt",
    "src/x.log/inside", "etc/passwd",
]  # fmt: skip

PATTERNS = [
    ["*.log"], ["**/*.log"], ["owned/deep"], ["src/owned"], ["*/*.txt"], ["logs", "*.bin"],
    ["**"], ["../*"], ["/etc/*"], ["src/*.log", "deep/*.bin"], ["x.log"], ["[ab].*"],
]  # fmt: skip

SOURCES = [["/src"], ["/src/"], ["/src/o*"], ["/"], ["/src", "/src/owned"], ["/src/*.txt"]]


@pytest.fixture
def tree(tmp_path):
    for rel in FILES:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    os.symlink("a.txt", tmp_path / "src" / "link.log")
    os.mkfifo(tmp_path / "src" / "owned" / "fifo")
    return str(tmp_path)


def _paths(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


@pytest.mark.parametrize("sources", SOURCES, ids=" ".join)
@pytest.mark.parametrize("patterns", PATTERNS, ids=" ".join)
def test_each_path_is_decided_as_the_walk_decides_it(tree, sources, patterns):
    with BuildContext(tree) as ctx:
        try:
            walked = ctx.included(sources, patterns, special=True)
            tops = [t for s in sources for t in ctx.expand(s)]
        except NotFound:
            with pytest.raises(NotFound, match="--from tree"):
                from_included(tree, sources, patterns)
            return
    lazy = from_included(tree, sources, patterns)
    assert walked is not None and lazy is not None
    for rel in _paths(tree):
        below = any(rel == t or t == "" or rel.startswith(t + "/") for t in tops)
        if below:
            assert (rel in lazy) == (rel in walked), rel


def test_no_pattern_filters_nothing(tree):
    assert from_included(tree, ["/src"], []) is None
    assert from_included(tree, ["/src"], ["", "  "]) is None
