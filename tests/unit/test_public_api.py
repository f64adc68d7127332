"""``kiln.__all__`` is the library's promise: every name resolves, and importing
kiln stays cheap (no store, registry or CLI code until a name is used)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import kiln


def test_every_public_name_resolves():
    for name in kiln.__all__:
        assert getattr(kiln, name) is not None, name


def test_import_kiln_loads_nothing_heavy():
    code = (
        "import sys, kiln; heavy = [m for m in ('sqlite3', 'httpx', 'click', 'rich', "
        "'kiln.store', 'kiln.registry', 'kiln.build') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_says_what_it_is():
    """``help(kiln.NotFound)`` and an editor's hover show the name's own docstring (an
    exception class without one showed Exception's "Common base class ...")."""

    def own_doc(value: object) -> str | None:  # a class's own, not one it inherits
        return vars(value).get("__doc__") if isinstance(value, type) else value.__doc__

    undocumented = [n for n in kiln.__all__ if n != "__version__" and not own_doc(getattr(kiln, n))]
    assert undocumented == []


def test_unknown_names_are_attribute_errors():
    try:
        kiln.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


# each is run in a fresh interpreter: which names were looked up first is the point
BUILD_ORDERS = {
    "options first": "opts = kiln.BuildOptions(allow=('bogus',)); build = kiln.build",
    "build first": "build = kiln.build; opts = kiln.BuildOptions(allow=('bogus',))",
    "engine imported first": "import kiln.build.parser; opts = kiln.BuildOptions(allow=('bogus',)); build = kiln.build",
    "from import": "from kiln import BuildOptions, build; opts = BuildOptions(allow=('bogus',))",
}  # fmt: skip


@pytest.mark.parametrize("order", BUILD_ORDERS)
def test_kiln_build_is_the_build_use_case_whatever_was_used_first(order):
    """``kiln.build`` is also the Dockerfile engine's package: it stays callable as the use
    case (which refuses an unknown entitlement before touching the context)."""
    code = (
        "import kiln\n" + BUILD_ORDERS[order] + "\n"
        "try:\n    build(None, opts)\nexcept kiln.InvalidArgument as e:\n    print(e)\n"
        "import kiln as k\nprint(k.build is build, k.build.parser.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "--allow 'bogus': unknown entitlement; use network.host or security.insecure",
        "True kiln.build.parser",
    ]


def test_kiln_build_can_be_patched_like_any_attribute(monkeypatch):
    def fake(ctx, opts):
        return "built"

    monkeypatch.setattr(kiln, "build", fake)
    assert kiln.build(None, None) == "built"


def _type_checking_names() -> set[str]:
    """The names ``kiln/__init__.py`` imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(kiln.__file__).read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    )
    return {a.asname or a.name for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}  # fmt: skip


def test_type_checkers_see_every_public_name_as_the_runtime_resolves_it():
    """A user's mypy reads kiln's ``TYPE_CHECKING`` imports and literal ``__all__``, not the
    lazy table: the three name the same things, and ``py.typed`` says the hints are for users."""
    assert sorted(kiln.__all__) == sorted([*kiln._EXPORTS, "__version__"])
    assert _type_checking_names() == set(kiln._EXPORTS)
    assert (Path(kiln.__file__).parent / "py.typed").is_file()


def test_what_the_public_functions_take_is_public_too():
    assert kiln.RegistryOptions(tls_verify=False).tls_verify is False
    assert kiln.PullRequest.of("busybox", options=kiln.RegistryOptions()).source == "busybox"
    assert kiln.ConfigSettings(env=["A=1"]).env == ["A=1"]
    assert kiln.RunSettings().__class__.__name__ == "RunSettings"


_NAME_OF_A_SUBMODULE = """
import importlib, pkgutil, sys, types
import kiln
names = []
for info in pkgutil.walk_packages(kiln.__path__, "kiln."):
    if info.ispkg:
        pkg = importlib.import_module(info.name)
        subs = {s.name for s in pkgutil.iter_modules(pkg.__path__)}
        names += [(info.name, n) for n in getattr(pkg, "__all__", []) if n in subs]
for pkg_name, name in names:
    if sys.argv[1] == "submodule-first":
        importlib.import_module(f"{pkg_name}.{name}")
    value = getattr(sys.modules[pkg_name], name)
    print(f"{pkg_name}.{name}={type(value).__name__}")
"""


def _kinds(order: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _NAME_OF_A_SUBMODULE, order],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_a_public_name_that_is_also_a_submodule_is_the_same_whatever_was_imported_first():
    # kiln.registry.login was the login function, until something imported the module
    # kiln.registry.login first: then a script's kiln.registry.login(...) was "not callable"
    assert _kinds("submodule-first") == _kinds("name-first")
