"""Docker image manifest v2, schema 1 (signed and unsigned), read (writing and signing:
:mod:`kiln.oci.schema1_write`).

A schema 1 manifest lists ``fsLayers`` and ``history`` top layer first; each
history entry carries a ``v1Compatibility`` JSON string (the old per-layer
image JSON). kiln reads it as containers/image does: layers are reversed to
bottom-first, consecutive duplicate IDs are dropped, ``throwaway`` entries
become empty-layer history with no blob, and the image config is synthesized
from the top entry's v1Compatibility plus the diff IDs the caller measured.

A signed manifest (``+prettyjws``) is identified by the digest of its payload:
the bytes before the ``signatures`` key, rebuilt from the JWS protected header's
``formatLength`` and ``formatTail``. Signatures are not verified (their keys are
self-declared, so they prove nothing about the publisher).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import media_types as mt
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.strict_json import MAX_MANIFEST_BYTES, canonical, expect, loads_object
from kiln.util.lazy_dataclass import dataclass

_V1_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_DROP_FROM_CONFIG = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")


def _b64url(value: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"schema 1 manifest signature has invalid base64 in {what}") from None


def payload(raw: bytes) -> bytes:
    """The signed bytes of a schema 1 manifest (the whole document when unsigned)."""
    obj = loads_object(raw, what="schema 1 manifest", limit=MAX_MANIFEST_BYTES)
    sigs = obj.get("signatures")
    if not sigs:
        return raw
    if not isinstance(sigs, list):
        raise InvalidArgument("schema 1 manifest signatures must be a list")
    found: bytes | None = None
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict) or not isinstance(sig.get("protected"), str):
            raise InvalidArgument(f"schema 1 manifest signature {i} has no protected header")
        try:
            header = json.loads(_b64url(sig["protected"], "protected header"))
        except ValueError:
            raise InvalidArgument(f"schema 1 manifest signature {i} header is not JSON") from None
        length = header.get("formatLength") if isinstance(header, dict) else None
        tail = header.get("formatTail") if isinstance(header, dict) else None
        if not isinstance(length, int) or not isinstance(tail, str) or not 0 < length <= len(raw):
            raise InvalidArgument(f"schema 1 manifest signature {i} has an invalid format header")
        body = raw[:length] + _b64url(tail, "formatTail")
        if found is not None and body != found:
            raise InvalidArgument("schema 1 manifest signatures disagree about the payload")
        found = body
    assert found is not None
    return found


def payload_digest(raw: bytes, algorithm: str = "sha256") -> Digest:
    """The manifest digest registries use for a (signed) schema 1 manifest."""
    return Digest.of_bytes(payload(raw), algorithm)


@dataclass(frozen=True)
class V1Layer:
    """One fsLayer with its v1Compatibility, bottom-first order."""

    blob: Digest
    v1: dict[str, Any]

    @property
    def throwaway(self) -> bool:
        return bool(self.v1.get("throwaway"))

    def history(self) -> History:
        cmd = (self.v1.get("container_config") or {}).get("Cmd") or []
        return History(
            created=str(self.v1.get("created") or ""),
            created_by=" ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd),
            author=str(self.v1.get("author") or ""),
            comment=str(self.v1.get("comment") or ""),
            empty_layer=self.throwaway,
        )


@dataclass(frozen=True)
class Schema1Manifest:
    raw: bytes
    media_type: str
    name: str
    tag: str
    architecture: str
    entries: tuple[V1Layer, ...]  # bottom first, duplicates removed

    @classmethod
    def parse(cls, raw: bytes, media_type: str = "") -> Schema1Manifest:
        obj = loads_object(raw, what="schema 1 manifest", limit=MAX_MANIFEST_BYTES)
        if obj.get("schemaVersion") != 1:
            raise InvalidArgument("not a schema 1 manifest: schemaVersion must be 1")
        if not media_type or media_type not in mt.SCHEMA1:
            media_type = mt.DOCKER_SCHEMA1_SIGNED if obj.get("signatures") else mt.DOCKER_SCHEMA1
        fs_layers = expect(obj.get("fsLayers"), list, "fsLayers") or []
        history = expect(obj.get("history"), list, "history") or []
        if not fs_layers:
            raise InvalidArgument("schema 1 manifest has no fsLayers")
        if len(fs_layers) != len(history):
            raise InvalidArgument(
                f"schema 1 manifest has {len(fs_layers)} fsLayers but {len(history)} history entries"
            )
        entries: list[V1Layer] = []
        for i, (layer, hist) in enumerate(zip(fs_layers, history, strict=True)):
            if not isinstance(layer, dict) or not isinstance(layer.get("blobSum"), str):
                raise InvalidArgument(f"schema 1 manifest fsLayers[{i}] has no blobSum")
            if not isinstance(hist, dict) or not isinstance(hist.get("v1Compatibility"), str):
                raise InvalidArgument(f"schema 1 manifest history[{i}] has no v1Compatibility")
            v1 = loads_object(hist["v1Compatibility"], what=f"history[{i}].v1Compatibility")
            if not _V1_ID_RE.match(str(v1.get("id", ""))):
                raise InvalidArgument(f"schema 1 manifest history[{i}] has an invalid image id")
            entries.append(V1Layer(Digest.parse(layer["blobSum"]), v1))
        entries = _drop_duplicates(entries)
        entries.reverse()
        return cls(
            raw=raw,
            media_type=media_type,
            name=str(obj.get("name") or ""),
            tag=str(obj.get("tag") or ""),
            architecture=str(obj.get("architecture") or ""),
            entries=tuple(entries),
        )

    @property
    def digest(self) -> Digest:
        return payload_digest(self.raw)

    @property
    def layer_digests(self) -> tuple[Digest, ...]:
        """Blobs to fetch, bottom first, throwaway layers skipped."""
        return tuple(e.blob for e in self.entries if not e.throwaway)

    def layers(self, sizes: dict[Digest, int] | None = None) -> list[Descriptor]:
        """Descriptors of the layer blobs (gzip tars; size 0 where not known yet)."""
        sizes = sizes or {}
        return [Descriptor(mt.DOCKER_LAYER_GZIP, d, sizes.get(d, 0)) for d in self.layer_digests]

    @property
    def history(self) -> tuple[History, ...]:
        return tuple(e.history() for e in self.entries)

    def to_config(self, diff_ids: list[str] | tuple[str, ...]) -> ImageConfig:
        """The image config, given the diff IDs of ``layer_digests`` (same order)."""
        if len(diff_ids) != len(self.layer_digests):
            raise InvalidArgument(
                f"schema 1 conversion needs {len(self.layer_digests)} diff IDs, got {len(diff_ids)}"
            )
        top = dict(self.entries[-1].v1)
        for key in _DROP_FROM_CONFIG:
            top.pop(key, None)
        if not top.get("architecture") and self.architecture:
            top["architecture"] = self.architecture
        top.setdefault("os", "linux")
        top["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
        top["history"] = [h.to_json() for h in self.history]
        return ImageConfig.parse(canonical(top))


def _drop_duplicates(entries: list[V1Layer]) -> list[V1Layer]:
    """Top-first entries: consecutive equal IDs collapse; each parent must be the next ID."""
    out = list(entries)
    i = 0
    while i < len(out) - 1:
        this, nxt = out[i].v1, out[i + 1].v1
        if this.get("id") == nxt.get("id"):
            del out[i]
            continue
        if this.get("parent") != nxt.get("id"):
            raise InvalidArgument(
                f"schema 1 manifest has an invalid parent ID: expected {nxt.get('id')}, "
                f"got {this.get('parent')}"
            )
        i += 1
    return out
