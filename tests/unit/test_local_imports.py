"""Imports of kiln modules sit at the top of the file, where a reader sees them.

A ``from kiln... import`` inside a function hides how modules depend on each other. These
are allowed:

- the CLI's verb modules (``kiln/cli/``): ``kiln --help`` imports every verb to list
  it, so a verb imports its work inside its command and ``--help`` stays cheap;
- an import whose line, or a comment up to three lines above it, names its
  ``start-up`` cost (a module that a short command would otherwise pay for), or
  says it needs an ``optional`` package.

Anything else fails with the file and line.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"
EXEMPT_DIRS = ("cli/",)
MARK = "start-up"
OPTIONAL = "optional"  # a module that needs an optional package (``kiln[varlink]``)
MARK_LINES_ABOVE = 3  # a comment may speak for a short group of imports


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
            if MARK not in context and OPTIONAL not in context:
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


def test_no_function_local_kiln_imports():
    found = _counts()
    assert not found, (
        "kiln imports inside functions (move them to the top of the file, or mark a "
        f"start-up cost with '# {MARK}: why'): "
        + "; ".join(f"{rel} lines {lines}" for rel, lines in found.items())
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
