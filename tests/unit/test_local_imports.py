"""Imports of kiln modules sit at the top of the file, where a reader sees them.

A ``from kiln... import`` inside a function hides how modules depend on each other. Two
kinds are allowed:

- the CLI's verb modules (``kiln/cli/``): ``kiln --help`` imports every verb to list
  it, so a verb imports its work inside its command and ``--help`` stays cheap;
- an import whose line, or a comment up to three lines above it, names its
  ``start-up`` cost (a module that a short command would otherwise pay for).

``BUDGET`` holds the files that still have others, with their count: a count may
only shrink (then lower it here), never grow, and no new file may join.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"
EXEMPT_DIRS = ("cli/",)
MARK = "start-up"
MARK_LINES_ABOVE = 3  # a comment may speak for a short group of imports

BUDGET: dict[str, int] = {
    "api/varlink_server.py": 2,
    "ops/build_share.py": 13,
    "ops/context.py": 1,
    "ops/registry.py": 7,
    "registry/client.py": 1,
}


def _is_kiln_import(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == "kiln"
    return any(alias.name.split(".")[0] == "kiln" for alias in node.names)


def local_imports(path: Path) -> list[int]:
    """Line numbers of unmarked kiln imports inside functions of ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    found: set[int] = set()
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Import | ast.ImportFrom) or not _is_kiln_import(node):
                continue
            context = " ".join(lines[max(node.lineno - 1 - MARK_LINES_ABOVE, 0) : node.end_lineno])
            if MARK not in context:
                found.add(node.lineno)
    return sorted(found)


@functools.cache
def _counts() -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(EXEMPT_DIRS):
            continue
        found = local_imports(path)
        if found:
            counts[rel] = found
    return counts


def test_no_new_function_local_kiln_imports():
    grown = {rel: lines for rel, lines in _counts().items() if len(lines) > BUDGET.get(rel, 0)}
    assert not grown, (
        "kiln imports inside functions (move them to the top of the file, or mark a "
        f"start-up cost with '# {MARK}: why'): "
        + "; ".join(
            f"{rel} lines {lines} (allowed {BUDGET.get(rel, 0)})" for rel, lines in grown.items()
        )
    )


def test_budget_shrinks_with_the_code():
    counts = _counts()
    stale = {rel: n for rel, n in BUDGET.items() if len(counts.get(rel, [])) < n}
    assert not stale, (
        f"lower BUDGET to the new counts: { ({r: len(counts.get(r, [])) for r in stale}) }"
    )


def test_a_local_import_is_found(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    from kiln.errors import NotFound\n"
        "    from . import sibling\n"
        "    # start-up: a heavy module only this path needs\n"
        "    from kiln.store import Store\n"
        "    import json\n"
    )
    assert local_imports(sample) == [3, 4]
