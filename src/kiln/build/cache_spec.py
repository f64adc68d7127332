"""``--cache-to`` / ``--cache-from`` values, read as BuildKit reads them.

A value is CSV ``key=value`` fields (a field may be quoted to hold commas):

- ``type=registry,ref=REG/REPO:TAG`` — the cache is an artifact in a registry;
- ``type=local,dest=DIR`` (export) / ``type=local,src=DIR`` (import) — an OCI layout
  directory, its manifest named by ``tag=`` (default ``latest``). An export adds blobs and
  removes none, as BuildKit's does by default (its opt-in ``reset=true``, which drops the
  blobs ``index.json`` no longer names, is not supported: an unknown option here);
- ``type=inline`` (export only) — the cache travels with the pushed image: import it
  with ``--cache-from IMAGE``.

Export options: ``mode=min`` (default: the steps of the final image's stage) or
``mode=max`` (every step of every stage), ``compression=``, ``ignore-error=true``
(a failed export is a warning, not a failed build); ``compression-level`` and
``force-compression`` are checked but layers are exported as they are stored (a warning
says so when that is not what was asked). ``registry.insecure=true`` lets
a registry cache use plain HTTP or an unverified certificate. ``oci-mediatypes`` and
``image-manifest`` are accepted for BuildKit compatibility (kiln always writes an OCI
manifest). A bare ``--cache-from REF`` means ``type=registry,ref=REF``, as in
buildah/podman's ``--cache-from REPO``; ``--cache-to REF`` likewise.

``--build-arg BUILDKIT_INLINE_CACHE=1`` (any true word of Go's ``strconv.ParseBool``)
asks for ``type=inline``, as dockerd and BuildKit read it.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument
from kiln.util.choices import Compression
from kiln.util.lazy_dataclass import dataclass

__all__ = [
    "INLINE_CACHE_ARG",
    "CacheSpec",
    "inline_cache_arg",
    "parse_cache_from",
    "parse_cache_to",
]

TYPES = ("registry", "local", "inline")
MODES = ("min", "max")
_COMMON = {"type", "ref", "registry.insecure", "tag"}
_TO_KEYS = _COMMON | {
    "dest", "mode", "compression", "compression-level", "force-compression",
    "ignore-error", "oci-mediatypes", "image-manifest",
}  # fmt: skip
_FROM_KEYS = _COMMON | {"src"}
INLINE_CACHE_ARG = "BUILDKIT_INLINE_CACHE"
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool's true words
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


@dataclass(frozen=True)
class CacheSpec:
    """One --cache-from or --cache-to."""

    type: str  # registry | local | inline
    ref: str = ""  # registry: the cache's reference
    path: str = ""  # local: the OCI layout directory (dest= or src=)
    tag: str = "latest"  # local: the manifest's name in the layout
    mode: str = "min"
    compression: str = ""  # "" (as stored) or a canonical Compression word
    level: str = ""  # compression-level=, as given: layers are exported as stored
    ignore_error: bool = False
    insecure: bool = False
    text: str = ""  # the value as given, for messages

    @property
    def where(self) -> str:
        if self.type == "registry":
            return self.ref
        if self.type == "local":
            return f"{self.path} ({self.tag})"
        return "inline"


def _fields(flag: str, value: str) -> dict[str, str]:
    import csv  # start-up: only --cache-from/--cache-to are parsed with it

    try:
        parts = next(csv.reader([value]), [])
    except csv.Error as exc:
        raise InvalidArgument(f"{flag} {value!r}: {exc}") from None
    out: dict[str, str] = {}
    for part in parts:
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InvalidArgument(f"{flag} {value!r}: {part!r} is not KEY=VALUE")
        out[key] = val.strip()
    return out


def _bool(flag: str, value: str, key: str, text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidArgument(f"{flag} {value!r}: {key}={text!r} must be true or false")


def _parse(flag: str, value: str, allowed: set[str]) -> tuple[dict[str, str], str]:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{flag}: empty value; use type=registry,ref=REG/REPO:TAG")
    fields = _fields(flag, value) if "=" in value else {"type": "registry", "ref": value}
    kind = fields.get("type", "registry" if "ref" in fields else "")
    if kind not in TYPES:
        raise InvalidArgument(
            f"{flag} {value!r}: type must be one of {', '.join(TYPES)}"
            + (
                ": gha, s3 and azblob caches are not supported, use a registry"
                if kind in ("gha", "s3", "azblob")
                else ""
            )
        )
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidArgument(f"{flag} {value!r}: unknown option(s) {', '.join(unknown)}")
    if kind == "registry" and not fields.get("ref"):
        raise InvalidArgument(f"{flag} {value!r}: type=registry needs ref=REG/REPO:TAG")
    return fields, kind


def parse_cache_to(value: str) -> CacheSpec:
    """One ``--cache-to`` value."""
    flag = "--cache-to"
    fields, kind = _parse(flag, value, _TO_KEYS)
    if kind == "local" and not fields.get("dest"):
        raise InvalidArgument(f"{flag} {value!r}: type=local needs dest=DIR")
    mode = fields.get("mode", "min").lower() or "min"
    if mode not in MODES:
        raise InvalidArgument(f"{flag} {value!r}: mode must be min or max")
    if kind == "inline" and mode == "max":
        raise InvalidArgument(f"{flag} {value!r}: type=inline supports only mode=min")
    # BuildKit's ``uncompressed`` is ``none`` (``kiln.util.choices``: one check, one wording)
    text = fields.get("compression", "")
    compression = Compression.parse(text, f"{flag} {value!r}: compression") if text else ""
    for key in ("oci-mediatypes", "image-manifest", "force-compression"):
        _bool(flag, value, key, fields.get(key, ""))  # accepted, but never a typo
    level = fields.get("compression-level", "")
    if level and not level.lstrip("-").isdigit():
        raise InvalidArgument(f"{flag} {value!r}: compression-level={level!r} must be a number")
    return CacheSpec(
        type=kind, ref=fields.get("ref", ""), path=fields.get("dest", ""),
        tag=fields.get("tag") or "latest", mode=mode, compression=compression, level=level,
        ignore_error=_bool(flag, value, "ignore-error", fields.get("ignore-error", "")),
        insecure=_bool(flag, value, "registry.insecure", fields.get("registry.insecure", "")),
        text=value,
    )  # fmt: skip


def parse_cache_from(value: str) -> CacheSpec:
    """One ``--cache-from`` value; a bare reference is a registry cache."""
    flag = "--cache-from"
    fields, kind = _parse(flag, value, _FROM_KEYS)
    if kind == "inline":
        raise InvalidArgument(
            f"{flag} {value!r}: an inline cache is read from its image: use --cache-from IMAGE"
        )
    if kind == "local" and not fields.get("src"):
        raise InvalidArgument(f"{flag} {value!r}: type=local needs src=DIR")
    return CacheSpec(
        type=kind, ref=fields.get("ref", ""), path=fields.get("src", ""),
        tag=fields.get("tag") or "latest",
        insecure=_bool(flag, value, "registry.insecure", fields.get("registry.insecure", "")),
        text=value,
    )  # fmt: skip


def inline_cache_arg(build_args: dict[str, str]) -> CacheSpec | None:
    """The ``type=inline`` export ``--build-arg BUILDKIT_INLINE_CACHE=1`` asks for (dockerd
    and BuildKit read it as ``--cache-to type=inline``), or None."""
    if build_args.get(INLINE_CACHE_ARG) not in _GO_TRUE:
        return None
    return CacheSpec(type="inline", text=f"type=inline (--build-arg {INLINE_CACHE_ARG})")
