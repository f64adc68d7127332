"""Instruction flags (``--from=x``, ``--link``, ``--exclude=a --exclude=b``).

Each instruction declares the flags it accepts and their kind; parsing checks
them with BuildKit's wording ("unknown flag: --foo", "duplicate flag
specified: --from", "missing a value on flag: --chown").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

from kiln.errors import InvalidArgument

__all__ = ["FlagKind", "parse_flags"]


class FlagKind(Enum):
    STRING = "string"
    BOOL = "bool"
    STRINGS = "strings"  # repeatable


FlagValue = str | bool | tuple[str, ...]


def parse_flags(
    flags: Iterable[str], accepted: Mapping[str, FlagKind], where: str
) -> dict[str, FlagValue]:
    """Parse ``--name[=value]`` words; ``where`` prefixes errors (e.g. ``Dockerfile:3``)."""
    values: dict[str, FlagValue] = {}
    for raw in flags:
        if raw == "--":
            break
        if not raw.startswith("--"):
            raise InvalidArgument(f"{where}: arg should start with -- : {raw}")
        flag_name, has_value, value = raw.partition("=")
        name = flag_name[2:]
        kind = accepted.get(name)
        if kind is None:
            raise InvalidArgument(f"{where}: unknown flag: {flag_name}")
        if name in values and kind is not FlagKind.STRINGS:
            raise InvalidArgument(f"{where}: duplicate flag specified: {flag_name}")
        if kind is FlagKind.BOOL:
            if has_value and value == "":
                raise InvalidArgument(f"{where}: missing a value on flag: {flag_name}")
            lowered = value.lower()
            if lowered not in ("", "true", "false"):
                raise InvalidArgument(
                    f"{where}: expecting boolean value for flag {flag_name}, not: {value}"
                )
            values[name] = lowered != "false"
        elif kind is FlagKind.STRING:
            if not has_value:
                raise InvalidArgument(f"{where}: missing a value on flag: {flag_name}")
            values[name] = value
        else:
            if not has_value:
                raise InvalidArgument(f"{where}: missing a value on flag: {flag_name}")
            previous = values.get(name, ())
            assert isinstance(previous, tuple)
            values[name] = (*previous, value)
    return values


def string_flag(values: Mapping[str, FlagValue], name: str) -> str | None:
    value = values.get(name)
    return value if isinstance(value, str) else None


def bool_flag(values: Mapping[str, FlagValue], name: str) -> bool:
    return values.get(name) is True


def strings_flag(values: Mapping[str, FlagValue], name: str) -> tuple[str, ...]:
    value = values.get(name, ())
    return value if isinstance(value, tuple) else ()
