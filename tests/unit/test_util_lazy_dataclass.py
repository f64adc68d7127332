"""kiln's ``dataclass`` behaves as the standard one and compiles a method on its first call."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import sys
import types

import pytest

from kiln.util import lazy_dataclass
from kiln.util.lazy_dataclass import dataclass as lazy

LAZY_AVAILABLE = lazy_dataclass._NS is not None
needs_lazy = pytest.mark.skipif(not LAZY_AVAILABLE, reason="this Python has no _create_fn")

PARAMS = [
    {},
    {"frozen": True},
    {"frozen": True, "slots": True},
    {"eq": False},
    {"order": True},
    {"unsafe_hash": True},
    {"kw_only": True},
    {"init": False, "repr": False, "eq": False},
]


def make(decorate, params):
    """The same classes through ``decorate``: a base, a subclass and an InitVar user."""

    @decorate(**params)
    class Base:
        """A base."""

        name: str = "x"
        tags: tuple[str, ...] = ()
        extra: list[int] = dataclasses.field(default_factory=list, compare=False, hash=False)

    @decorate(**params)
    class Child(Base):
        """A child."""

        size: int = 0

    @decorate(**{k: v for k, v in params.items() if k != "slots"})
    class Scaled:
        """With an InitVar."""

        value: int = 1
        scale: dataclasses.InitVar[int] = 1

        def __post_init__(self, scale):
            object.__setattr__(self, "value", self.value * scale)

    return Base, Child, Scaled


def observe(cls, *args, **kwargs):
    """Everything a caller sees of ``cls`` and two equal instances of it."""
    seen: dict[str, object] = {
        "doc": cls.__doc__,
        "signature": str(inspect.signature(cls)),
        "fields": [(f.name, f.compare, f.hash) for f in dataclasses.fields(cls)],
        "match_args": getattr(cls, "__match_args__", None),
        "hashable": cls.__hash__ is not None,
        "methods": {  # the generated ones, as a caller looks them up
            name: (method.__module__, method.__qualname__, method.__doc__)
            for name in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__lt__")
            if name in vars(cls) and (method := getattr(cls, name)) is not None
        },
    }
    try:
        a, b = cls(*args, **kwargs), cls(*args, **kwargs)
    except TypeError as exc:
        return {**seen, "init": str(exc)}
    seen["repr"] = repr(a) if cls.__repr__ is not object.__repr__ else "object"
    seen["eq"] = a == b
    seen["eq_other"] = (a == 1, a != 1)
    seen["hash_equal"] = hash(a) == hash(b) if seen["hashable"] and seen["eq"] else None
    try:
        seen["lt"] = a < b
    except TypeError as exc:
        seen["lt"] = str(exc)
    try:
        a.name = "changed"
        seen["assign"] = a.name
    except (dataclasses.FrozenInstanceError, AttributeError) as exc:
        seen["assign"] = (type(exc).__name__, str(exc))
    if dataclasses.fields(cls) and cls.__init__ is not object.__init__:
        seen["asdict"] = dataclasses.asdict(b)
        seen["replace"] = dataclasses.astuple(dataclasses.replace(b))
    return seen


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(p) or "plain")
def test_every_method_behaves_as_the_standard_dataclass(params):
    standard = make(dataclasses.dataclass, params)
    ours = make(lazy, params)
    for std_cls, our_cls in zip(standard, ours, strict=True):
        for args, kwargs in (((), {}), ((), {"name": "n"})):
            if std_cls.__name__ == "Scaled":
                args, kwargs = (), {"value": 3, "scale": 2}
            assert observe(our_cls, *args, **kwargs) == observe(std_cls, *args, **kwargs)


# classes for pickle must be importable by name
@lazy(frozen=True)
class Point:
    """A point."""

    x: int
    y: int = 0


@needs_lazy
def test_a_method_is_compiled_on_its_first_call_and_then_called_directly():
    @lazy(frozen=True)
    class Pair:
        """Two values."""

        left: int
        right: int = 0

    def compiled(name):
        return isinstance(vars(Pair)[name], types.FunctionType)

    assert not compiled("__eq__") and not compiled("__init__")  # not while the class was made
    assert Pair(1) == Pair(1, 0) and Pair(1) != Pair(2)
    assert compiled("__eq__") and compiled("__init__")  # now in place of the lazy ones
    assert vars(Pair)["__eq__"].__qualname__.endswith("Pair.__eq__")
    assert not compiled("__hash__") and not compiled("__setattr__")  # still not used
    assert "Pair.__hash__" in repr(Pair.__hash__)  # looked up: compiled and put in place
    assert compiled("__hash__")


@needs_lazy
def test_an_inherited_method_is_compiled_into_the_class_that_made_it():
    @lazy(frozen=True)
    class Base:
        """A base."""

        a: int = 1

    @lazy(frozen=True, eq=False)
    class Sub(Base):
        """Keeps the base's equality."""

    assert Sub() == Sub()
    assert isinstance(vars(Base)["__eq__"], types.FunctionType)
    assert "__eq__" not in Sub.__dict__


def test_a_class_without_a_docstring_gets_the_standard_one():
    def bare(decorate):
        @decorate(frozen=True)
        class Bare:
            a: int
            b: str = ""

        return Bare

    ours = bare(lazy)
    assert ours.__doc__ == bare(dataclasses.dataclass).__doc__
    assert ours.__doc__.startswith("Bare(a: ")
    assert isinstance(vars(ours)["__eq__"], types.FunctionType)  # made as the standard one


def test_pickled_instances_round_trip():
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Point(1).x = 2  # type: ignore[misc]


def test_the_dataclasses_module_is_left_as_it_was():
    assert sys.modules["dataclasses"]._create_fn is not lazy_dataclass._lazy_create_fn
    assert dataclasses.dataclass is not lazy or not LAZY_AVAILABLE


def test_kiln_makes_its_dataclasses_with_the_lazy_decorator():
    """A module importing ``dataclasses.dataclass`` puts its compiling back into every start."""
    import ast
    from pathlib import Path

    src = Path(lazy_dataclass.__file__).resolve().parents[1]
    allowed = {src / "util" / "lazy_dataclass.py", src / "errors.py"}  # errors sits below util
    eager = []
    for path in sorted(src.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            imported = isinstance(node, ast.ImportFrom) and node.module == "dataclasses"
            if imported and any(alias.name == "dataclass" for alias in node.names):
                eager.append(f"{path.relative_to(src)}:{node.lineno}")
            attribute = isinstance(node, ast.Attribute) and node.attr == "dataclass"
            if attribute and isinstance(node.value, ast.Name) and node.value.id == "dataclasses":
                eager.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not eager, f"use kiln.util.lazy_dataclass.dataclass in {eager}"


_COMPILING_CHILD = r"""
import sys

compiled = []


def hook(event, args):
    if event != "compile":
        return
    source = args[0].decode(errors="replace") if isinstance(args[0], bytes) else str(args[0])
    if source.startswith("def __create_fn__("):  # a method dataclasses generated
        compiled.append(source)


sys.addaudithook(hook)
from kiln.util.lazy_dataclass import dataclass


@dataclass(frozen=True)
class Point:
    '''A point.'''

    x: int
    y: int = 2


p = Point(1)
assert (p.x, p.y, p == Point(1, 2), hash(p) == hash(Point(1, 2))) == (1, 2, True, True)
print(len(compiled))
"""


def _compiles_in_a_new_process(tmp_path, **env: str) -> int:
    """How many methods a fresh interpreter compiles to make and use ``Point``."""
    import os
    import subprocess

    src = os.path.dirname(os.path.dirname(os.path.dirname(lazy_dataclass.__file__)))
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    child_env.update(PYTHONPATH=src, PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"), **env)
    done = subprocess.run(
        [sys.executable, "-S", "-c", _COMPILING_CHILD],
        env=child_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def _code_files(tmp_path) -> list:
    return list((tmp_path / "pycache").rglob("lazy_dataclass.*.methods"))


@needs_lazy
def test_a_method_is_compiled_once_across_processes(tmp_path):
    """The first process compiles the methods it calls and keeps their code beside the
    module's bytecode; the next one compiles none of them and they behave the same."""
    assert _compiles_in_a_new_process(tmp_path) == 3  # __init__, __eq__, __hash__
    assert len(_code_files(tmp_path)) == 1
    assert _compiles_in_a_new_process(tmp_path) == 0


@needs_lazy
def test_the_method_code_file_is_a_cache_only(tmp_path):
    """No file with PYTHONDONTWRITEBYTECODE; a damaged file only costs the compiling."""
    methods = _compiles_in_a_new_process(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    assert methods == 3 and _code_files(tmp_path) == []
    _compiles_in_a_new_process(tmp_path)
    (code_file,) = _code_files(tmp_path)
    code_file.write_bytes(code_file.read_bytes()[:40])  # torn
    assert _compiles_in_a_new_process(tmp_path) == methods
    code_file.write_bytes(b"not marshal at all")
    assert _compiles_in_a_new_process(tmp_path) == methods
    assert _compiles_in_a_new_process(tmp_path) == 0  # rewritten whole


@needs_lazy
def test_a_code_file_that_is_no_regular_file_is_not_read(tmp_path):
    """Every kiln process reads the code file as it starts: a FIFO there must not block it,
    nor a link (to /dev/zero, to another file) be followed; each costs the compiling only."""
    import os

    methods = _compiles_in_a_new_process(tmp_path)
    (code_file,) = _code_files(tmp_path)
    elsewhere = tmp_path / "elsewhere.methods"
    os.replace(code_file, elsewhere)  # a good file, but not here
    code_file.symlink_to(elsewhere)
    assert _compiles_in_a_new_process(tmp_path) == methods
    assert code_file.is_symlink() or _compiles_in_a_new_process(tmp_path) == 0
    code_file.unlink()
    os.mkfifo(code_file)  # nobody ever writes it: a read blocks for ever
    assert _compiles_in_a_new_process(tmp_path) == methods


@needs_lazy
def test_a_code_file_too_large_to_be_one_is_not_read(tmp_path):
    """A code file bigger than any kiln writes is not read whole into memory."""
    methods = _compiles_in_a_new_process(tmp_path)
    (code_file,) = _code_files(tmp_path)
    good = code_file.read_bytes()
    with code_file.open("r+b") as f:  # the same file, padded (sparse) past the limit
        f.truncate(lazy_dataclass.MAX_CODE_FILE_BYTES + 1)
    assert code_file.read_bytes()[: len(good)] == good
    assert _compiles_in_a_new_process(tmp_path) == methods


@needs_lazy
def test_the_code_file_is_not_written_through_a_link(tmp_path, monkeypatch):
    """The code file is written as a new file, then renamed: a link at its temporary name
    is not written through (nor is the file written then)."""
    import os

    code_file = tmp_path / "lazy_dataclass.methods"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / f"{code_file.name}.{os.getpid()}.tmp").symlink_to(victim)
    monkeypatch.setattr(lazy_dataclass, "_code_file", lambda: str(code_file))
    monkeypatch.setattr(lazy_dataclass, "_codes", {"x = 1": compile("x = 1", "<s>", "exec")})
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    lazy_dataclass._save_codes()
    assert victim.read_bytes() == b"keep me"
    assert not code_file.exists()


_SPELLINGS = """
from __future__ import annotations
import dataclasses, typing
import typing as t
IMPORTS
Nothing = None

def make(decorate):
    @decorate
    class Spelled:
        \"\"\"ClassVar and InitVar spelled every way a string annotation can name them.\"\"\"

        a: ClassVar[int] = 1
        b: typing.ClassVar[int] = 2
        c: t.ClassVar = 3
        d: CV[int] = 4
        e: InitVar[int] = 5
        f: dataclasses.InitVar[int] = 6
        g: int = 7
        h: Nothing = None
        i: nosuchmodule.ClassVar[int] = 8
        j: "  ClassVar [int]" = 9
        k: list[ClassVar] = dataclasses.field(default_factory=list)

        def __post_init__(self, *init_vars):
            pass

    return Spelled
"""


@needs_lazy
@pytest.mark.parametrize(
    "imports",
    ["from typing import ClassVar\nfrom dataclasses import InitVar\nCV = ClassVar", ""],
    ids=["names", "modules-only"],
)
def test_string_annotations_are_class_and_init_vars_as_the_standard_dataclass_reads_them(imports):
    module = types.ModuleType("kiln_test_spellings")
    sys.modules[module.__name__] = module
    try:
        exec(compile(_SPELLINGS.replace("IMPORTS", imports), module.__name__, "exec"), vars(module))
        for _ in range(2):  # the second time from what the first parsed
            seen = [
                {n: str(f._field_type) for n, f in cls.__dataclass_fields__.items()}
                for cls in (module.make(dataclasses.dataclass), module.make(lazy))
            ]
            assert seen[0] == seen[1]
        assert seen[0]["b"] == "_FIELD_CLASSVAR" and seen[0]["f"] == "_FIELD_INITVAR"
    finally:
        del sys.modules[module.__name__]
