"""``dataclass`` whose generated methods are compiled when first called.

Python 3.11 and 3.12 compile every method a dataclass generates (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, a frozen class's ``__setattr__`` and
``__delattr__``) with one ``exec`` each while the class is created. kiln has about
160 dataclasses, and most of their methods are never called in a given process: that
compiling was over a third of a tiny ``kiln build``'s CPU (about 320 M of its 890 M
instructions), more than anything the build did.

This ``dataclass`` is the standard library's, run over a copy of the ``dataclasses``
namespace in which ``_create_fn`` hands out a descriptor instead of a function: when the
method is first called or looked up on its class, it is compiled exactly as
``dataclasses`` would have compiled it and takes the descriptor's place in the class, so
later calls cost what they always did, and ``getattr``, ``inspect.signature`` and
``help`` see the real function. The class is the same in every other way (fields,
``dataclasses.fields``/``replace``/``asdict``, equality, hashing, frozenness, slots,
inheritance); a class without a docstring is made eagerly, as ``dataclasses`` writes its
docstring from ``__init__``'s signature. Nothing global changes: the ``dataclasses``
module itself is untouched.

The compiling itself is done once, not in every process: a method's source text (what
``dataclasses`` generates for it, word for word) is compiled the first time any process
needs it, and its code object is kept beside this module's bytecode, in
``__pycache__/lazy_dataclass.<tag>.methods`` (where Python writes the ``.pyc``, under the
same rules: nothing is written with ``PYTHONDONTWRITEBYTECODE``, ``PYTHONPYCACHEPREFIX``
moves it). A tiny build compiled ~50 ``__init__`` methods, 6-14 ms of its CPU, in every
run. The code is the same as compiled in place (the text is the key, the bytecode magic
number guards the file); a file that cannot be read or written costs the compiling only.

Python 3.13 builds a class's methods in one ``exec`` and has no ``_create_fn``; there,
and wherever the module does not look like 3.11's and 3.12's, this is
``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import atexit
import dataclasses
import marshal
import os
import stat
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

#: entries kept in the code file at most (texts of older kiln versions drop out past it)
MAX_CACHED_METHODS = 4096

_codes: dict[str, types.CodeType] | None = None  # method text -> code (the file's, then ours)
_used: set[str] = set()  # the texts this process asked for
_dirty = False  # compiled here, not in the file yet
_codes_lock = threading.Lock()


def _code_file() -> str | None:
    """Where Python keeps this module's bytecode, as ``.methods`` (None where it keeps none)."""
    import importlib.util  # start-up: only once a method is first compiled

    try:
        pyc = importlib.util.cache_from_source(__file__)
    except (NotImplementedError, ValueError):
        return None
    return pyc[: -len(".pyc")] + ".methods" if pyc.endswith(".pyc") else None


#: the code file's format: bump it when what is compiled, or how, changes
_FORMAT = b"kiln-methods-1:"


def _magic() -> bytes:
    """The code file's header: its format, and the bytecode's (the interpreter's magic)."""
    import importlib.util  # start-up: only once a method is first compiled

    return _FORMAT + importlib.util.MAGIC_NUMBER


#: the largest code file read (MAX_CACHED_METHODS methods take a few MB): bigger is no cache
MAX_CODE_FILE_BYTES = 32 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_code_file(path: str) -> bytes:
    """The code file's bytes; b"" unless it is a regular file of a sane size. Every kiln
    process reads it at start: a FIFO there would block it, a link to /dev/zero fill its
    memory. kiln writes it only by rename, so a link there is none of its making."""
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CODE_FILE_BYTES:
            return b""
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_CODE_FILE_BYTES + 1)
    finally:
        os.close(fd)


def _load_codes() -> dict[str, types.CodeType]:
    path = _code_file()
    if path is None:
        return {}
    try:
        data = _read_code_file(path)
        magic = _magic()
        if data[: len(magic)] == magic and len(data) <= MAX_CODE_FILE_BYTES:
            codes = marshal.loads(data[len(magic) :])
            if isinstance(codes, dict):
                return codes
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return {}


def _save_codes() -> None:
    """Write the code file with what this process compiled (at exit, once)."""
    path = _code_file()
    if path is None or _codes is None or sys.dont_write_bytecode:
        return
    codes = _codes if len(_codes) <= MAX_CACHED_METHODS else {t: _codes[t] for t in _used}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # a new file of its own (O_EXCL): never through a link, nor another process's
        fd = os.open(tmp, _WRITE_FLAGS, 0o644)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_magic() + marshal.dumps(codes))
        os.replace(tmp, path)  # whole or not at all: a reader never sees half of it
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _code_of(text: str) -> types.CodeType:
    """``text`` compiled, from the code file when an earlier process compiled it."""
    global _codes, _dirty
    with _codes_lock:
        if _codes is None:
            _codes = _load_codes()
        code = _codes.get(text)
        _used.add(text)
        if not isinstance(code, types.CodeType):  # not there (or not code: compiled anew)
            # as dataclasses' own exec compiles it: without this module's __future__ flags
            code = compile(text, "<string>", "exec", dont_inherit=True)
            _codes[text] = code
            if not _dirty and not sys.dont_write_bytecode:
                atexit.register(_save_codes)
            _dirty = True
    return code


def _cached_exec(source: Any, globals: Any = None, locals: Any = None) -> None:
    """``exec`` as ``dataclasses._create_fn`` calls it, with the text's code looked up."""
    exec(_code_of(source) if isinstance(source, str) else source, globals, locals)


def _with_cached_exec(fn: Any) -> Any:
    """``dataclasses._create_fn`` whose ``exec`` is :func:`_cached_exec`."""
    if not isinstance(fn, types.FunctionType):
        return None
    ns = dict(vars(dataclasses))
    ns["exec"] = _cached_exec
    clone = types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__kwdefaults__ = fn.__kwdefaults__
    return clone


_create_fn = _with_cached_exec(getattr(dataclasses, "_create_fn", None))


class _LazyMethod:
    """A generated method, compiled when first called or looked up on its class.

    A descriptor, not a stub function: ``getattr(cls, name)`` (and so ``inspect.signature``,
    ``help``) sees the compiled function with its real parameters."""

    __slots__ = ("__name__", "__qualname__", "_spec", "_fn", "owner")

    def __init__(self, name: str, spec: tuple[Any, ...]) -> None:
        self.__name__ = self.__qualname__ = name
        self._spec: tuple[Any, ...] | None = spec
        self._fn: Any = None
        self.owner: type | None = None

    def compiled(self) -> Any:
        fn = self._fn
        if fn is None:
            assert _create_fn is not None and self._spec is not None
            args, body, globals, locals, return_type = self._spec
            fn = _create_fn(
                self.__name__, args, body, globals=globals, locals=locals, return_type=return_type
            )
            fn.__qualname__ = self.__qualname__
            owner = self.owner
            if owner is not None and owner.__dict__.get(self.__name__) is self:
                setattr(owner, self.__name__, fn)  # later calls go straight to the function
            self._fn = fn
        return fn

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self.compiled().__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # through a wrapper (__repr__'s)
        return self.compiled()(*args, **kwargs)


def _lazy_create_fn(
    name: str,
    args: Any,
    body: Any,
    *,
    globals: Any = None,
    locals: Any = None,
    return_type: Any = dataclasses.MISSING,
) -> Any:
    """``dataclasses._create_fn``'s stand-in: the method, compiled when first used."""
    lazy = _LazyMethod(name, (args, body, globals, locals, return_type))
    if name != "__repr__":
        return lazy

    # dataclasses wraps __repr__ in a recursion guard that copies a function's attributes
    def __repr__(self: Any) -> Any:
        return lazy.compiled()(self)

    __repr__.__module__ = (globals or {}).get("__name__", __repr__.__module__)
    return __repr__


def _lazy_namespace() -> dict[str, Any] | None:
    """A copy of the ``dataclasses`` namespace whose functions see ``_lazy_create_fn``."""
    ns = dict(vars(dataclasses))
    actions = ns.get("_hash_action")
    if _create_fn is None or not isinstance(actions, dict) or "_process_class" not in ns:
        return None
    for key, value in ns.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is vars(dataclasses):
            clone = types.FunctionType(
                value.__code__, ns, value.__name__, value.__defaults__, value.__closure__
            )
            clone.__kwdefaults__ = value.__kwdefaults__
            clone.__qualname__ = value.__qualname__
            ns[key] = clone
    ns["_hash_action"] = {k: None if f is None else ns[f.__name__] for k, f in actions.items()}
    ns["_create_fn"] = _lazy_create_fn
    if isinstance(ns.get("_is_type"), types.FunctionType) and "_MODULE_IDENTIFIER_RE" in ns:
        ns["_is_type"] = _is_type
    return ns


#: a string annotation -> the (module, name) ``dataclasses._MODULE_IDENTIFIER_RE`` finds in it
_annotation_names: dict[str, tuple[str | None, str] | None] = {}
_UNPARSED = ("", "")


def _is_type(
    annotation: str, cls: type, a_module: Any, a_type: Any, is_type_predicate: Any
) -> bool:
    """``dataclasses._is_type`` (is a string annotation ``ClassVar``/``InitVar``?), the same
    answer with each annotation text parsed once: asked twice for every field of every
    class, it was ~2% of a cached rebuild's instructions."""
    names = _annotation_names.get(annotation, _UNPARSED)
    if names is _UNPARSED:
        match = dataclasses._MODULE_IDENTIFIER_RE.match(annotation)  # type: ignore[attr-defined]
        names = _annotation_names[annotation] = match.groups() if match else None
    if names is None:
        return False
    module_name, name = names
    ns = None
    if not module_name:
        ns = sys.modules.get(cls.__module__).__dict__
    else:
        module = sys.modules.get(cls.__module__)
        if module and module.__dict__.get(module_name) is a_module:
            ns = sys.modules.get(a_type.__module__).__dict__
    return bool(ns and is_type_predicate(ns.get(name), a_module))


_NS = _lazy_namespace()


def _own_methods(cls: type) -> type:
    """Tell each lazy method of ``cls`` which class to put its compiled function in."""
    for name, value in vars(cls).items():
        if isinstance(value, _LazyMethod):
            value.owner = cls
            value.__qualname__ = f"{cls.__qualname__}.{name}"
    return cls


def _dataclass(cls: type | None = None, /, **params: Any) -> Any:
    """``dataclasses.dataclass`` (same parameters), with methods compiled on first call."""

    def wrap(cls: type) -> type:
        if _NS is None or not cls.__dict__.get("__doc__"):
            return dataclasses.dataclass(**params)(cls)
        return _own_methods(_NS["dataclass"](**params)(cls))

    return wrap if cls is None else wrap(cls)


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass  # type checkers see the standard one
else:
    dataclass = _dataclass
