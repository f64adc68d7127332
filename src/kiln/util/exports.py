"""A package's public names, each imported from its own module on first use (PEP 562).

A package ``__init__`` that imports every public name eagerly makes anyone who needs one
small module of the package pay for all of it: ``kiln.container.paths`` would load the
builder, the store and the runtime. Instead the ``__init__`` lists where each name lives,
imports them under ``if TYPE_CHECKING:`` for type checkers, and hands the table here::

    __getattr__, __dir__ = lazy_exports(__name__, {"Builder": "kiln.container.builder"})

A value is ``"module"`` (the attribute has the public name) or ``"module:attribute"``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        held = sys.modules[package]
        setattr(held, name, value)  # the next lookup is a plain attribute
        return vars(held)[name]  # as set: a package's __setattr__ may keep another (kiln)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
