"""Docker image manifest v2, schema 1, written and signed (``kiln push --format v2s1``).

Schema 1 has no config blob: each history entry of the image becomes one ``fsLayers``
entry (top first) with a ``v1Compatibility`` string. Entries below the top are the old
per-layer image JSON (an ID, the parent's ID, ``created``, ``author``, ``comment`` and
the step as ``container_config.Cmd``); the top one is the whole image config without
``rootfs`` and ``history``, with its own ``id`` and ``parent``. A history entry that made
no layer (``empty_layer``) points at the gzipped empty tar and is marked ``throwaway``.
The IDs are chained digests, as Docker's distribution code derives them, so the same
image always gives the same manifest payload.

Registries only take a *signed* schema 1 manifest (``+prettyjws``): a JSON Web Signature
(ES256, the key in the header as a JWK with libtrust's key ID) over the manifest printed
with a three-space indent; the signature goes in as a ``signatures`` key before the last
brace, and its protected header records how to cut the payload back out
(``formatLength``, ``formatTail``), which is what :func:`kiln.oci.schema1.payload` reads.
The signature proves nothing about the publisher (the key travels in the header): it is
a format requirement. Callers keep one key per store.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.schema1 import payload as schema1_payload
from kiln.oci.strict_json import loads_object

#: Docker's gzipped empty tar (1024 zero bytes), the blob of every ``throwaway`` entry.
EMPTY_GZIP_LAYER = bytes.fromhex("1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000")
EMPTY_GZIP_LAYER_DIGEST = Digest.of_bytes(EMPTY_GZIP_LAYER)
_ZERO_TIME = "0001-01-01T00:00:00Z"
_INDENT = "   "


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _go_json(value: Any, indent: str | None = None) -> str:
    """JSON as Go's encoder writes it (``<``, ``>``, ``&`` escaped; ``": "`` with indent)."""
    if indent is None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(value, indent=len(indent), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _history(config: ImageConfig, layers: Sequence[Descriptor]) -> list[History]:
    history = list(config.history)
    if not history:  # no history recorded: one entry per layer, as other tools fill it
        history = [History(created=config.created) for _ in layers]
    made = sum(1 for h in history if not h.empty_layer)
    if made != len(layers):
        raise InvalidArgument(
            f"the image has {len(layers)} layers but its history records {made} layer steps; "
            "Docker schema 1 needs one history entry per layer: push as v2s2 or oci"
        )
    if not history:
        raise InvalidArgument(
            "the image has no layers and no history: Docker schema 1 cannot describe it; "
            "push as v2s2 or oci"
        )
    return history


def build(
    config: ImageConfig, layers: Sequence[Descriptor], name: str, tag: str
) -> tuple[bytes, bool]:
    """The unsigned schema 1 manifest of an image (``config`` with its exact bytes, its
    gzip ``layers`` bottom first) for repository ``name`` and ``tag``; and whether it
    refers to :data:`EMPTY_GZIP_LAYER` (which must then be pushed too)."""
    history = _history(config, layers)
    fs_layers: list[dict[str, str]] = []
    v1s: list[str] = []
    parent = ""
    uses_empty = False
    remaining = iter(layers)
    blobs: list[Digest] = []
    for h in history:
        if h.empty_layer:
            blobs.append(EMPTY_GZIP_LAYER_DIGEST)
            uses_empty = True
        else:
            blobs.append(next(remaining).digest)
    for h, blob in zip(history[:-1], blobs[:-1], strict=True):
        v1_id = hashlib.sha256(f"{blob.hex} {parent}".encode()).hexdigest()
        entry: dict[str, Any] = {"id": v1_id}
        if parent:
            entry["parent"] = parent
        if h.comment:
            entry["comment"] = h.comment
        entry["created"] = h.created or _ZERO_TIME
        entry["container_config"] = {"Cmd": [h.created_by]}
        if h.author:
            entry["author"] = h.author
        if h.empty_layer:
            entry["throwaway"] = True
        v1s.append(_go_json(entry))
        fs_layers.append({"blobSum": str(blob)})
        parent = v1_id
    raw_config = config.to_bytes()
    top_blob = blobs[-1]
    top_id = hashlib.sha256(f"{top_blob.hex} {parent} ".encode() + raw_config).hexdigest()
    top = loads_object(raw_config, what="image config")
    top.pop("rootfs", None)
    top.pop("history", None)
    top["id"] = top_id
    if parent:
        top["parent"] = parent
    if history[-1].empty_layer:
        top["throwaway"] = True
    if not top.get("container_config"):  # the last step, where readers look for it
        top["container_config"] = {"Cmd": [history[-1].created_by]}
    v1s.append(_go_json(dict(sorted(top.items()))))
    fs_layers.append({"blobSum": str(top_blob)})
    fs_layers.reverse()
    v1s.reverse()
    doc = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": config.architecture,
        "fsLayers": fs_layers,
        "history": [{"v1Compatibility": v} for v in v1s],
    }
    return _go_json(doc, _INDENT).encode(), uses_empty


# -- signing ------------------------------------------------------------------------------


def key_id(public_key: Any) -> str:
    """libtrust's key ID: the SHA-256 of the DER public key, first 240 bits, base32 in
    twelve groups of four joined by ``:``."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def _jwk(public_key: Any) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kid": key_id(public_key),
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def sign(payload: bytes, private_key: Any, now: datetime.datetime | None = None) -> bytes:
    """``payload`` (an indented schema 1 manifest from :func:`build`) signed with an ECDSA
    P-256 ``private_key`` (``cryptography``), as a ``+prettyjws`` document."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != (
        "secp256r1"
    ):
        raise InvalidArgument("a schema 1 signing key must be an ECDSA P-256 key")
    text = payload.decode()
    close = len(text.rstrip())
    if close == 0 or text[close - 1] != "}":
        raise InvalidArgument("a schema 1 payload must be a JSON object")
    length = len(text[: close - 1].rstrip().encode())
    tail = payload[length:]
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    protected = _b64url(
        _go_json({"formatLength": length, "formatTail": _b64url(tail), "time": when}).encode()
    )
    signing_input = f"{protected}.{_b64url(payload)}".encode()
    r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = {
        "header": {"jwk": _jwk(private_key.public_key()), "alg": "ES256"},
        "signature": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        "protected": protected,
    }
    sigs = _go_json([signature], _INDENT).replace("\n", "\n" + _INDENT)
    return payload[:length] + f',\n{_INDENT}"signatures": {sigs}\n}}'.encode()


def verify(signed: bytes) -> None:
    """Check every signature of a signed schema 1 manifest against the key in its header
    (what a registry checks before it stores one); InvalidArgument if one fails."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    body = schema1_payload(signed)
    sigs = loads_object(signed, what="schema 1 manifest").get("signatures") or []
    if not sigs:
        raise InvalidArgument("the schema 1 manifest is not signed")
    for i, sig in enumerate(sigs):
        jwk = sig.get("header", {}).get("jwk", {})
        try:
            x = int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big")
            y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big")
            raw = base64.urlsafe_b64decode(sig["signature"] + "=" * (-len(sig["signature"]) % 4))
            key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            if jwk.get("kid") != key_id(key):
                raise InvalidArgument(f"schema 1 signature {i}: the key ID does not match the key")
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            key.verify(
                der, f"{sig['protected']}.{_b64url(body)}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except (KeyError, TypeError, ValueError, InvalidSignature):
            raise InvalidArgument(f"schema 1 signature {i} does not verify") from None


__all__ = ["EMPTY_GZIP_LAYER", "EMPTY_GZIP_LAYER_DIGEST", "build", "key_id", "sign", "verify"]
