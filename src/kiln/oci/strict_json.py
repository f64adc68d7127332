"""Strict, size-capped JSON for untrusted manifests, configs and API bodies."""

from __future__ import annotations

import json
from typing import Any

from kiln.errors import InvalidArgument

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
# No manifest, config or API body nests more than a few levels; a document parsed near the
# interpreter's recursion limit would still fail later, when written back (json.dumps
# recurses too), so the cap is far below it.
MAX_DEPTH = 128


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; a key given twice leaves fewer entries than pairs
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f'duplicate key "{key}"')
            seen.add(key)
    return out


def parse(data: bytes | str) -> Any:
    """``json.loads`` refusing NaN/Infinity, duplicate keys and deep nesting; ValueError
    names the fault.

    For callers that word their own error; :func:`loads` also caps the size and raises
    InvalidArgument. Nesting deeper than the interpreter's recursion limit (no real
    manifest, config or API body comes near it) is refused as ValueError, not the
    RecursionError the decoder raises."""
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _may_nest_too_deep(data) and _too_deep(value):
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def _may_nest_too_deep(data: bytes | str) -> bool:
    """Whether ``data`` holds more than MAX_DEPTH brackets: fewer cannot nest deeper (those
    inside strings only add to the count), and most manifests and configs have fewer, so
    counting them (in C) spares the walk of :func:`_too_deep`."""
    if isinstance(data, str):
        return data.count("{") + data.count("[") > MAX_DEPTH
    return data.count(b"{") + data.count(b"[") > MAX_DEPTH


def _too_deep(value: Any) -> bool:
    """Whether containers nest more than MAX_DEPTH levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


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
) -> dict[str, Any]:
    value = loads(data, what=what, limit=limit)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys, as kiln writes manifests and configs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def expect_strings(value: Any, what: str) -> tuple[str, ...]:
    """A JSON list of strings (None or missing: empty) as a tuple, else InvalidArgument."""
    items = expect(value, list, what) or []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgument(f"{what} must be a list of strings")
    return tuple(items)


def expect_int(value: Any, what: str) -> int:
    """A JSON integer (None or missing: 0), else InvalidArgument."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an integer")
    return value


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float):
        raise InvalidArgument(f"{what} must be a number")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidArgument(f"{what} must be of type {name}")
    return value
