"""Strict, size-capped JSON for untrusted manifests, configs and API bodies."""

from __future__ import annotations

import json
from typing import Any

from kiln.errors import InvalidArgument

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate key "{key}"')
        out[key] = value
    return out


def parse(data: bytes | str) -> Any:
    """``json.loads`` refusing NaN/Infinity, duplicate keys and deep nesting; ValueError
    names the fault.

    For callers that word their own error; :func:`loads` also caps the size and raises
    InvalidArgument. Nesting deeper than the interpreter's recursion limit (no real
    manifest, config or API body comes near it) is refused as ValueError, not the
    RecursionError the decoder raises."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def loads(data: bytes | str, *, what: str = "document", limit: int = MAX_MANIFEST_BYTES) -> Any:
    """Parse JSON refusing NaN/Infinity, duplicate keys and oversize input."""
    if len(data) > limit:
        raise InvalidArgument(f"{what} is {len(data)} bytes, over the {limit}-byte limit")
    try:
        return parse(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def loads_object(
    data: bytes | str, *, what: str = "document", limit: int = MAX_MANIFEST_BYTES
) -> dict:
    value = loads(data, what=what, limit=limit)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys, as kiln writes manifests and configs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float):
        raise InvalidArgument(f"{what} must be a number")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidArgument(f"{what} must be of type {name}")
    return value
