"""An ``io.podman`` call's parameters checked against ``io.podman.varlink`` before it is served.

podman's server (Go) unmarshalled a call into typed structs: a value of the wrong
type was ``org.varlink.service.InvalidParameter``, a parameter or struct field
left out (or null) was its zero value. The ``varlink`` package's own check is
looser: it walks a string given for a ``[]string`` character by character, takes
a string for a struct, rounds floats given for ints and lets unknown struct
fields through. :func:`checked_call` does the strict check and the zero values in
one walk; a bad value is named by its path (``build.buildOptions.memory``,
``filters[2]``), as the varlink spec's ``InvalidParameter(parameter)`` wants.

Unknown fields are refused at every level (the package refuses unknown top-level
parameters already), so a misspelt field (``dockerfile``) is an error rather than
a silently ignored request. ``?type`` fields left out stay out.
"""

from __future__ import annotations

from typing import Any

from varlink.scanner import (
    _Alias,
    _Array,
    _CustomType,
    _Dict,
    _Enum,
    _Maybe,
    _Method,
    _Object,
    _Struct,
)

INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1  # varlink's int is Go's int64


class BadParameter(Exception):
    """The value at ``path`` does not have its declared type."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


class _Checker:
    def __init__(self, interface: Any):
        self.members = interface.members

    def resolve(self, vtype: Any) -> Any:
        while isinstance(vtype, _CustomType | _Alias):
            vtype = self.members[vtype.name].type if isinstance(vtype, _CustomType) else vtype.type
        return vtype

    def zero(self, vtype: Any) -> Any:
        vtype = self.resolve(vtype)
        if isinstance(vtype, _Maybe | _Object):
            return None
        if isinstance(vtype, _Array):
            return []
        if isinstance(vtype, _Dict):
            return {}
        if isinstance(vtype, _Struct):
            return self.struct({}, vtype, "")
        if isinstance(vtype, _Enum):
            return ""
        return vtype  # the scanner's bool(), int(), float(), str(): the zero values

    def value(self, value: Any, vtype: Any, path: str) -> Any:
        vtype = self.resolve(vtype)
        if value is None:
            return self.zero(vtype)
        if isinstance(vtype, _Maybe):
            return self.value(value, vtype.element_type, path)
        if isinstance(vtype, _Object):
            return value
        if isinstance(vtype, _Struct):
            if not isinstance(value, dict):
                raise BadParameter(path)
            return self.struct(value, vtype, path)
        if isinstance(vtype, _Array):
            if not isinstance(value, list):
                raise BadParameter(path)
            return [self.value(v, vtype.element_type, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(vtype, _Dict):
            if not isinstance(value, dict):
                raise BadParameter(path)
            return {k: self.value(v, vtype.element_type, f"{path}[{k}]") for k, v in value.items()}
        if isinstance(vtype, _Enum):
            if value not in vtype.fields:
                raise BadParameter(path)
            return value
        if isinstance(vtype, bool):  # before int: a bool is an int in Python
            ok = isinstance(value, bool)
        elif isinstance(vtype, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok and INT_MIN <= value <= INT_MAX
        elif isinstance(vtype, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(vtype, str):
            ok = isinstance(value, str)
        else:
            ok = False
        if not ok:
            raise BadParameter(path)
        return value

    def struct(self, value: dict[str, Any], vtype: _Struct, path: str) -> dict[str, Any]:
        for name in value:
            if name not in vtype.fields:
                raise BadParameter(_join(path, str(name)))
        out = {}
        for name, ftype in vtype.fields.items():
            v = self.value(value.get(name), ftype, _join(path, name))
            if v is not None:
                out[name] = v
        return out


def checked_call(interface: Any, call: dict[str, Any]) -> dict[str, Any]:
    """``call`` with its parameters checked and the left-out ones at their zero values.

    Raises :class:`BadParameter`; a call of a method the interface lacks is returned
    as it is (the ``varlink`` package answers ``MethodNotFound``)."""
    method = interface.members.get(str(call.get("method", "")).rpartition(".")[2])
    if not isinstance(method, _Method):
        return call
    params = call.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadParameter("parameters")
    return {**call, "parameters": _Checker(interface).struct(params, method.in_type, "")}


__all__ = ["BadParameter", "checked_call"]
