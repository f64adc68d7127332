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

Python 3.13 builds a class's methods in one ``exec`` and has no ``_create_fn``; there,
and wherever the module does not look like 3.11's and 3.12's, this is
``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import dataclasses
import types
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

_create_fn = getattr(dataclasses, "_create_fn", None)


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
    return ns


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
