"""Imports of kiln modules sit at the top of the file, where a reader sees them.

A ``from kiln... import`` inside a function hides how modules depend on each other. Two
kinds are allowed:

- the CLI's verb modules (``kiln/cli/``): ``kiln --help`` imports every verb to list
  it, so a verb imports its work inside its command and ``--help`` stays cheap;
- an import whose line, or the line above it, says ``start-up:`` and why (a module
  that a short command would otherwise pay for).

``BUDGET`` holds the files that still have others, with their count: a count may
only shrink (then lower it here), never grow, and no new file may join.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kiln"
EXEMPT_DIRS = ("cli/",)
MARK = "start-up:"

BUDGET: dict[str, int] = {
    "api/app.py": 1,
    "api/routes_build.py": 4,
    "api/routes_containers.py": 1,
    "api/routes_images.py": 6,
    "api/routes_libpod.py": 13,
    "api/routes_manifests.py": 7,
    "api/routes_registry.py": 3,
    "api/routes_system.py": 3,
    "api/routes_system_df.py": 1,
    "api/routes_transfer.py": 8,
    "api/server.py": 1,
    "api/shapes.py": 2,
    "api/uploads.py": 1,
    "api/varlink_server.py": 1,
    "api/wiring.py": 1,
    "build/checks.py": 1,
    "build/dispatch_copy.py": 3,
    "build/dispatch_from.py": 1,
    "build/executor.py": 7,
    "build/named_contexts.py": 2,
    "build/outputs.py": 4,
    "build/record.py": 2,
    "build/remote_context.py": 3,
    "build/run_mounts.py": 1,
    "build/stage_run.py": 1,
    "container/builder.py": 20,
    "container/commit.py": 4,
    "container/copy_add.py": 1,
    "container/leftovers.py": 1,
    "container/step_commit.py": 2,
    "image/copy.py": 1,
    "image/registry_sink.py": 4,
    "ops/archives.py": 18,
    "ops/build.py": 21,
    "ops/build_history.py": 2,
    "ops/build_platforms.py": 9,
    "ops/build_share.py": 20,
    "ops/builder.py": 1,
    "ops/check.py": 10,
    "ops/containers.py": 11,
    "ops/context.py": 7,
    "ops/dir_transport.py": 1,
    "ops/file_transfer.py": 16,
    "ops/image_events.py": 1,
    "ops/images.py": 15,
    "ops/leftovers.py": 10,
    "ops/manifest_sources.py": 8,
    "ops/manifest_transfer.py": 25,
    "ops/manifests.py": 15,
    "ops/registry.py": 19,
    "ops/system.py": 6,
    "ops/transports.py": 1,
    "runtime/__init__.py": 3,
    "snapshot/snapshotter.py": 1,
    "store/resolve.py": 1,
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
            context = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno])
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
        f"start-up cost with '# {MARK} why'): "
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
