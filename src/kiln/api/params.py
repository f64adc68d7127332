"""Query-string parsing with 400 answers that name the parameter and its value.

libpod's routes match parameter names in any case, as podman's server does (its schema
decoder folds case: podman 4's bindings send ``alltags``, ``compressionformat``, ...): the
front door folds a libpod request's names to lower case (:func:`fold_query_names`) and
every reader here finds a name as written or, failing that, in lower case. Docker's
routes keep their names as Docker spells them.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.datastructures import QueryParams

from kiln.errors import InvalidArgument
from kiln.oci import strict_json

_TRUE = {"1", "true", "yes", "on", "t"}
_FALSE = {"", "0", "false", "no", "off", "none", "f"}
_DOCKER_FALSE = {"", "0", "no", "false", "none"}  # dockerd's httputils.BoolValue
MAX_PARAM_JSON = 1 << 20


def fold_query_names(query: bytes) -> bytes:
    """``query`` (a raw query string) with every parameter name in lower case, the values
    untouched (a libpod request's, so that ``tlsVerify``, ``tlsverify`` and ``TLSVERIFY``
    are one parameter)."""
    parts = []
    for part in query.split(b"&"):
        name, sep, value = part.partition(b"=")
        parts.append(name.lower() + sep + value)
    return b"&".join(parts)


def _key(q: QueryParams, name: str) -> str:
    """``name`` as ``q`` has it: as written, else folded (a libpod request's)."""
    return name if name in q else name.lower()


def qhas(q: QueryParams, name: str) -> bool:
    return _key(q, name) in q


def bad(name: str, value: str, why: str) -> InvalidArgument:
    shown = value if len(value) <= 200 else value[:200] + "..."
    return InvalidArgument(f'invalid value for query parameter "{name}": "{shown}": {why}')


def qbool(q: QueryParams, name: str, default: bool = False) -> bool:
    key = _key(q, name)
    if key not in q:
        return default
    value = q[key].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad(name, q[key], "expected a boolean (1, 0, true or false)")


def docker_bool(q: QueryParams, name: str, default: bool = False) -> bool:
    """A boolean of a Docker route, read as dockerd reads it (``httputils.BoolValue``):
    absent -> ``default``; ``""``, ``0``, ``no``, ``false`` or ``none`` (any case, spaces
    around) -> False; any other value -> True (``all=2`` lists all images there). libpod's
    routes keep :func:`qbool`, which refuses a value it cannot read, as podman's server does."""
    if name not in q:
        return default
    return q[name].strip().lower() not in _DOCKER_FALSE


def qint(q: QueryParams, name: str, default: int | None = None) -> int | None:
    value = q.get(_key(q, name), "")
    if value == "":
        return default
    try:
        return int(value, 10)
    except ValueError:
        raise bad(name, value, "expected an integer") from None


def qstr(q: QueryParams, name: str, default: str = "") -> str:
    return q.get(_key(q, name), default)


def qlist(q: QueryParams, name: str) -> list[str]:
    """A parameter that may be repeated (``t=a&t=b``); empty values dropped."""
    return [v for v in q.getlist(_key(q, name)) if v != ""]


def loads(name: str, value: str) -> Any:
    if len(value) > MAX_PARAM_JSON:
        raise bad(name, value, "the JSON value is too large")
    try:
        return strict_json.parse(value)
    except (ValueError, RecursionError) as exc:
        raise bad(name, value, f"not valid JSON ({exc})") from None


def qjson_map(q: QueryParams, name: str, *, null_is_unset: bool = False) -> dict[str, str]:
    """A JSON object of strings (``buildargs``); a null value is an empty string (podman's
    reading), or with ``null_is_unset`` no value at all: dockerd's reading of the null the
    docker CLI sends for ``--build-arg NAME`` when ``NAME`` is not in its environment
    (the Dockerfile's default stands)."""
    value = q.get(_key(q, name), "")
    if value == "":
        return {}
    data = loads(name, value)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad(name, value, "expected a JSON object of strings")
    out = {}
    for k, v in data.items():
        if v is None:
            if null_is_unset:
                continue
            v = ""
        if not isinstance(v, str):
            raise bad(name, value, f"the value of {k!r} is not a string")
        out[k] = v
    return out


def qjson_str_list(q: QueryParams, name: str) -> list[str]:
    """A JSON list of strings; a bare non-JSON string is taken as a one-item list."""
    out: list[str] = []
    for value in q.getlist(_key(q, name)):
        if value == "":
            continue
        if not value.lstrip().startswith("["):
            out.append(value)
            continue
        data = loads(name, value)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise bad(name, value, "expected a JSON list of strings")
        out.extend(data)
    return out


def qlabels(q: QueryParams, name: str = "labels") -> dict[str, str]:
    """Labels as a JSON map (Docker) or a JSON list of ``k=v`` (podman)."""
    value = q.get(_key(q, name), "")
    if value == "":
        return {}
    data = loads(name, value)
    if isinstance(data, list):
        out = {}
        for item in data:
            if not isinstance(item, str):
                raise bad(name, value, "expected a JSON list of KEY=VALUE strings")
            k, _, v = item.partition("=")
            out[k] = v
        return out
    if isinstance(data, dict):
        return qjson_map(q, name)
    if data is None:
        return {}
    raise bad(name, value, "expected a JSON object or list")


def qfilters(q: QueryParams, name: str = "filters") -> list[str]:
    """Docker's filters (``{"k":["v"]}`` or the older ``{"k":{"v":true}}``) as ``k=v`` strings."""
    value = q.get(_key(q, name), "")
    if value == "":
        return []
    data = loads(name, value)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise bad(name, value, "expected a JSON object mapping filter names to values")
    out = []
    for key, values in data.items():
        if isinstance(values, dict):
            items = [v for v, on in values.items() if on is True]
            if len(items) != len(values):
                raise bad(name, value, f"filter {key!r}: values must map to true")
        elif isinstance(values, list):
            items = values
        elif isinstance(values, str):
            items = [values]
        else:
            raise bad(name, value, f"filter {key!r}: expected a list of strings")
        for item in items:
            if not isinstance(item, str):
                raise bad(name, value, f"filter {key!r}: expected a list of strings")
            out.append(f"{key}={item}")
    return out


def decode_auth_header(value: str, header: str = "X-Registry-Auth") -> dict[str, Any]:
    """A base64url JSON auth object (Docker's X-Registry-Auth / X-Registry-Config)."""
    value = value.strip()
    if not value:
        return {}
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode())
    except (ValueError, TypeError):
        try:
            raw = base64.b64decode(padded.encode())
        except (ValueError, TypeError):
            raise InvalidArgument(f"header {header}: not valid base64") from None
    try:
        data = strict_json.parse(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"header {header}: not a base64-encoded JSON object") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"header {header}: not a base64-encoded JSON object")
    return data


__all__ = [
    "bad",
    "decode_auth_header",
    "docker_bool",
    "fold_query_names",
    "loads",
    "qbool",
    "qfilters",
    "qhas",
    "qint",
    "qjson_map",
    "qjson_str_list",
    "qlabels",
    "qlist",
    "qstr",
]
