"""Layer-cache keys, as BuildKit forms them: a step's key hashes its own definition with its
parent's key and the checksums of what it reads.

``step_key(parent, instr, ...)`` is ``sha256`` over canonical JSON of:

- ``parent``: the previous step's key, or for a stage's first step the base image ID
  (``scratch`` plus the platform for an empty base);
- ``instruction``: the expanded instruction — its class and every field but the line
  number and the original text (so moving a line or editing a comment keeps the key);
- ``args``: the build args the step uses (names and values);
- ``files``: content digests of the files it reads (COPY/ADD sources, ``RUN
  --mount=type=bind`` sources), from the stat-keyed checksum cache;
- ``from``: image IDs of the stages/images it reads from (``COPY --from``, mount ``from=``);
- ``settings``: build-wide settings that change the result (format, compression,
  timestamp, platform, squash mode).

Secret values are never part of a key: a secret mount contributes only its id and target.
Keys are stored with ``store.put_cache(key, image_id)`` and looked up with ``get_cache``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from kiln.build.instructions import Instruction

__all__ = [
    "KEY_VERSION",
    "StepParts",
    "base_key",
    "instruction_fields",
    "key_of",
    "step_inputs",
    "step_key",
]

KEY_VERSION = 1
_SKIP = frozenset({"line", "original"})


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"@": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name in _SKIP:
                continue
            out[f.name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def instruction_fields(instr: Instruction | None) -> dict[str, Any]:
    """The instruction's definition as plain data (no line numbers, no source text)."""
    if instr is None:
        return {}
    data = _plain(instr)
    if type(instr).__name__ == "Run":
        # the mount specs as written may name build args; the expanded mounts are kept
        data.pop("mount_specs", None)
        data["mounts"] = [_public_mount(m) for m in data.get("mounts", [])]
    return data


def _public_mount(mount: dict[str, Any]) -> dict[str, Any]:
    if mount.get("type") == "secret":
        return {k: mount.get(k) for k in ("@", "type", "id", "target", "env", "required")}
    # SELinux relabelling changes labels on the host, never what the step writes
    return {k: v for k, v in mount.items() if k != "relabel"}


def base_key(base_image_id: str | None, platform: str) -> str:
    """The 'parent' of a stage's first step."""
    return base_image_id or f"scratch:{platform}"


class StepParts(TypedDict, total=False):
    """What a step's key covers besides its parent and instruction (the module docstring
    says what each is): ``step_inputs`` and ``step_key`` take these keywords."""

    args: Mapping[str, str] | None
    files: Mapping[str, str] | None
    from_images: Mapping[str, str] | None
    settings: Mapping[str, Any] | None
    extra: Mapping[str, Any] | None


_PARTS = frozenset(StepParts.__annotations__)


def step_inputs(
    parent: str, instr: Instruction | None, **parts: Unpack[StepParts]
) -> dict[str, Any]:
    """What goes into a step's key, as plain data (``key_of`` hashes it; ``--explain``
    compares two of them)."""
    unknown = parts.keys() - _PARTS
    if unknown:  # a misspelt part would silently stay out of the key
        raise TypeError(f"step_inputs: unknown key parts {sorted(unknown)}")
    return {
        "v": KEY_VERSION,
        "parent": parent,
        "instruction": instruction_fields(instr),
        "args": dict(sorted((parts.get("args") or {}).items())),
        "files": dict(sorted((parts.get("files") or {}).items())),
        "from": dict(sorted((parts.get("from_images") or {}).items())),
        "settings": _plain(dict(parts.get("settings") or {})),
        "extra": _plain(dict(parts.get("extra") or {})),
    }


def key_of(inputs: Mapping[str, Any]) -> str:
    """The key of a ``step_inputs`` document."""
    raw = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def step_key(parent: str, instr: Instruction | None, **parts: Unpack[StepParts]) -> str:
    """The cache key of one step (see the module docstring)."""
    return key_of(step_inputs(parent, instr, **parts))
