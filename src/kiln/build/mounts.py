"""``RUN --mount=...`` specifications, as BuildKit's dockerfile frontend reads them.

``type=bind|cache|tmpfs|secret|ssh`` with ``target``/``dst``/``destination``,
``source``/``src``, ``from``, ``ro``/``readonly``/``rw``/``readwrite``, ``id``,
``sharing=shared|private|locked``, ``mode``, ``uid``, ``gid``, ``size``,
``required`` and (secrets) ``env``; and buildah's SELinux options for bind and cache mounts,
``z`` / ``relabel=shared`` and ``Z`` / ``relabel=private`` (relabelling is a no-op where
SELinux is off; kiln never relabels).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["MOUNT_TYPES", "Mount", "parse_mount"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_BOOL_KEYS = {"ro": True, "readonly": True, "rw": False, "readwrite": False}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Mount:
    """One RUN --mount."""

    type: str = "bind"
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool = False
    id: str | None = None
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    required: bool = False
    env: str | None = None
    relabel: str | None = None  # "shared" (z) or "private" (Z); not part of a cache key


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("", "true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid value for {key}: {value}")


def _parse_int(key: str, value: str, base: int = 10) -> int:
    try:
        number = int(value, base)
    except ValueError:
        raise InvalidArgument(f"invalid value for {key}: {value}") from None
    if number < 0:
        raise InvalidArgument(f"invalid value for {key}: {value}")
    return number


def _parse_size(value: str) -> int:
    match = _SIZE.match(value.strip())
    if not match:
        raise InvalidArgument(f"invalid value for size: {value}")
    factor = 1024 ** "bkmgtp".index(match.group(2).lower() or "b")
    return int(float(match.group(1)) * factor)


def _fields(spec: str) -> list[str]:
    import csv  # start-up: only a RUN --mount is parsed with it

    try:
        rows = list(csv.reader([spec]))
    except csv.Error as exc:
        raise InvalidArgument(f"invalid mount {spec!r}: {exc}") from None
    return [f for f in (rows[0] if rows else []) if f != ""]


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> Mount:
    """Parse one ``--mount`` value; ``expand`` is applied to each value first.

    Without ``expand``, numeric fields that still contain ``$`` are left unset so
    a spec can be checked before build args are known.
    """
    values: dict[str, object] = {}
    readonly: bool | None = None
    mount_type = "bind"
    for field in _fields(spec):
        key, has_value, value = field.partition("=")
        key = key.strip()
        if key in ("z", "Z"):  # buildah's: shared or private SELinux label; case matters
            if not has_value or _parse_bool(key, expand(value) if expand else value):
                values["relabel"] = "shared" if key == "z" else "private"
            continue
        key = key.lower()
        value = expand(value) if expand else value
        if key in _BOOL_KEYS:
            flag = _parse_bool(key, value) if has_value else True
            readonly = flag if _BOOL_KEYS[key] else not flag
            continue
        if not has_value and key != "required":
            raise InvalidArgument(f"invalid field '{field}' must be a key=value pair")
        deferred = expand is None and "$" in value
        if key == "type":
            if value not in MOUNT_TYPES:
                raise InvalidArgument(f"unsupported mount type {value!r}")
            mount_type = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("from", "id", "env"):
            values["from_" if key == "from" else key] = value
        elif key == "sharing":
            if value not in SHARING_MODES:
                raise InvalidArgument(f"unsupported sharing value {value!r}")
            values["sharing"] = value
        elif key == "relabel":
            if value not in ("shared", "private"):
                raise InvalidArgument(
                    f"invalid value for relabel: {value!r}: use relabel=shared (z) or "
                    "relabel=private (Z)"
                )
            values["relabel"] = value
        elif key == "required":
            values["required"] = _parse_bool(key, value) if has_value else True
        elif key in ("uid", "gid") and not deferred:
            values[key] = _parse_int(key, value)
        elif key == "mode" and not deferred:
            values["mode"] = _parse_int(key, value, 8)
        elif key == "size" and not deferred:
            values["size"] = _parse_size(value)
        elif key not in ("uid", "gid", "mode", "size"):
            raise InvalidArgument(f"unexpected key '{key}' in '{field}'")
    return _finish(mount_type, values, readonly)


def _finish(mount_type: str, values: dict[str, Any], readonly: bool | None) -> Mount:
    target = values.get("target")
    if mount_type == "secret":
        ident = values.get("id") or (posixpath.basename(str(target)) if target else None)
        if not ident:
            raise InvalidArgument("secret mount requires an id= or a target=")
        values["id"] = ident
        if not target and not values.get("env"):
            values["target"] = f"/run/secrets/{ident}"
        values.setdefault("mode", 0o400)
    elif mount_type == "ssh":
        if values.get("source"):
            raise InvalidArgument("ssh mount does not take a source= (name the agent with id=)")
        values.setdefault("id", "default")
        values.setdefault("mode", 0o600)
    elif not target:
        raise InvalidArgument(f"mount type={mount_type} requires a target= (or dst=, destination=)")
    if mount_type == "cache":
        values.setdefault("id", target)
        values.setdefault("mode", 0o755)
    if mount_type not in ("secret", "ssh") and values.get("required"):
        raise InvalidArgument(f"required= is not supported for mount type={mount_type}")
    if mount_type not in ("bind", "cache") and values.get("from_"):
        raise InvalidArgument(f"from= is not supported for mount type={mount_type}")
    if "from_" in values and not values["from_"]:
        raise InvalidArgument(
            "from= of a mount is empty: name a stage or an image, or leave it out"
        )
    if mount_type not in ("bind", "cache") and values.get("relabel"):
        raise InvalidArgument(
            f"SELinux relabelling (z, Z, relabel=) applies to bind and cache mounts, not to "
            f"type={mount_type}"
        )
    if readonly is None:
        readonly = mount_type in ("bind", "secret", "ssh")
    return Mount(type=mount_type, readonly=readonly, **values)
