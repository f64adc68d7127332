"""No import cycles between kiln's modules, beyond the few still being taken apart.

import-linter keeps the arrows between packages pointing down; this keeps them acyclic
inside a package too. Every import counts, also one inside a function or under
``TYPE_CHECKING``: each still ties the two modules together. A cycle listed in
``KNOWN`` may shrink or go (then delete it here); a new one, or a known one that grows,
fails with the modules and the lines that close it.
"""

from __future__ import annotations

import grimp

KNOWN: list[set[str]] = []


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_tarjan_finds_a_cycle_and_ignores_a_chain():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [{"a", "b", "c"}]


def test_no_new_import_cycles():
    graph = grimp.build_graph("kiln", cache_dir=None)
    modules = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}
    problems = []
    for cycle in _cycles(edges):
        if any(cycle <= known for known in KNOWN):
            continue
        lines = []
        for importer in sorted(cycle):
            for imported in sorted(edges[importer] & cycle):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    lines.append(f"  {importer}:{detail['line_number']}: {detail['line_contents']}")
        problems.append("cycle between " + ", ".join(sorted(cycle)) + ":\n" + "\n".join(lines))
    assert not problems, "\n\n".join(problems)
