"""A build stage's state has one owner: ``StageRun`` (issue 11).

Dispatchers and the executor read a stage and call its methods; they never assign its
attributes, and nothing in ``kiln.build`` reaches into the Executor through the stage
(what a stage needs of the build is ``kiln.build.services.BuildServices``).
"""

from __future__ import annotations

import ast
import pathlib

import kiln.build

BUILD = pathlib.Path(kiln.build.__file__).parent


def _modules() -> list[pathlib.Path]:
    return sorted(BUILD.glob("*.py"))


def _assigned_attributes(tree: ast.AST) -> list[ast.Attribute]:
    out: list[ast.Attribute] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        else:
            continue
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store | ast.Del):
                    out.append(sub)
    return out


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _first_attribute(node: ast.Attribute) -> str:
    """``self.a.b`` -> ``a``: the attribute of the object itself."""
    while isinstance(node.value, ast.Attribute):
        node = node.value
    return node.attr


def test_no_module_writes_a_stage_runs_attributes():
    found = []
    for path in _modules():
        if path.name == "stage_run.py":
            continue
        for attr in _assigned_attributes(ast.parse(path.read_text(), str(path))):
            if _root_name(attr) == "run":
                found.append(f"{path.name}:{attr.lineno}: run.{attr.attr}")
    assert not found, "StageRun's state is changed only by its methods:\n" + "\n".join(found)


def test_stage_run_changes_only_private_state_after_it_starts():
    """Public attributes are set once, in ``__init__``; what changes is private and
    changed by StageRun's own methods."""
    tree = ast.parse((BUILD / "stage_run.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "StageRun")
    found = []
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef) or method.name == "__init__":
            continue
        for attr in _assigned_attributes(method):
            name = _first_attribute(attr)
            if _root_name(attr) == "self" and not name.startswith("_"):
                found.append(f"{method.name}:{attr.lineno}: self.{name}")
    assert not found, "\n".join(found)


def test_nothing_in_build_reaches_into_the_executor_through_a_stage():
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "ex":
                found.append(f"{path.name}:{node.lineno}")
            imported = isinstance(node, ast.ImportFrom) and node.module == "kiln.build.executor"
            if imported and path.name != "executor.py":
                found.append(f"{path.name}:{node.lineno}: imports the executor")
    assert not found, "\n".join(found)


# -- the Builder owns its state too ------------------------------------------------------------

KILN = BUILD.parent


def _builder_attributes() -> set[str]:
    """What a Builder holds: the attributes its ``__init__`` sets."""
    tree = ast.parse((KILN / "container" / "builder.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Builder")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.attr for a in _assigned_attributes(init) if _root_name(a) == "self"}


def _builder_names(func: ast.AST) -> set[str]:
    """The names a function binds to a Builder: parameters annotated ``Builder`` (or
    ``Builder | None``), results of ``Builder.<...>(...)`` and of ``*builder*()`` calls, and
    the names kiln uses for one by convention."""
    names = {"b", "builder"}
    args = getattr(func, "args", None)
    if args is not None:
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            if arg.annotation is not None and "Builder" in ast.unparse(arg.annotation):
                names.add(arg.arg)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            called = ast.unparse(node.value.func)
            if called.startswith("Builder.") or "builder" in called.rsplit(".", 1)[-1]:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_nothing_outside_container_assigns_a_builders_attributes():
    """``Builder`` changes its state only through its methods (adopt a config, commit a
    step, set pending history...): no module outside ``kiln.container`` assigns one of its
    attributes (``b.config = ...``, ``b.state.history = ...``) or a ``self._builder``'s."""
    held = _builder_attributes()
    assert {"state", "config", "record"} <= held  # the scan sees the Builder
    found = []
    for path in sorted(KILN.rglob("*.py")):
        if "container" in path.relative_to(KILN).parts[:1]:
            continue
        tree = ast.parse(path.read_text(), str(path))
        funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for func in funcs:
            names = _builder_names(func)
            for attr in _assigned_attributes(func):
                chain = []
                node: ast.expr = attr
                while isinstance(node, ast.Attribute):
                    chain.append(node.attr)
                    node = node.value
                chain.reverse()  # root.first.second...
                root = node.id if isinstance(node, ast.Name) else None
                if root == "self" and chain[:1] == ["_builder"]:
                    rest = chain[1:]
                elif root in names:
                    rest = chain
                else:
                    continue
                if rest and rest[0] in held:
                    rel = path.relative_to(KILN)
                    found.append(f"{rel}:{attr.lineno}: {ast.unparse(attr)}")
    assert not found, "a Builder's state is changed by its methods:\n" + "\n".join(
        sorted(set(found))
    )
