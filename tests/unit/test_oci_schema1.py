"""Docker v2 schema 1 manifests: payload digest of signed ones, conversion to layers + config."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from kiln.errors import InvalidArgument
from kiln.oci import Digest, media_types
from kiln.oci.schema1 import Schema1Manifest, payload, payload_digest


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _id(c: str) -> str:
    return c * 64


def _d(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def _v1(id_: str, parent: str | None, **extra) -> dict:
    out = {"id": id_, "created": "2020-01-01T00:00:00Z", **extra}
    if parent:
        out["parent"] = parent
    return out


def _manifest(v1s: list[dict], blobs: list[str]) -> dict:
    return {
        "schemaVersion": 1,
        "name": "library/busybox",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": b} for b in blobs],
        "history": [{"v1Compatibility": json.dumps(v)} for v in v1s],
    }


TOP = _v1(
    _id("c"),
    _id("b"),
    throwaway=True,
    Size=0,
    os="linux",
    architecture="amd64",
    config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
    container_config={"Cmd": ["/bin/sh", "-c", '#(nop) CMD ["sh"]']},
)
MID = _v1(_id("b"), _id("a"), container_config={"Cmd": ["/bin/sh", "-c", "#(nop) ADD file"]})
BOTTOM = _v1(_id("a"), None)
DOC = _manifest([TOP, MID, MID, BOTTOM], [_d(3), _d(2), _d(2), _d(1)])


def _sign(doc: dict) -> tuple[bytes, bytes]:
    body = json.dumps(doc, indent=3).encode()
    length = len(body) - 2  # libtrust signs everything before the final "\n}"
    protected = _b64url(
        json.dumps({"formatLength": length, "formatTail": _b64url(body[length:])}).encode()
    )
    sig = f',\n   "signatures": [{{"header": {{"alg": "ES256"}}, "signature": "AAAA", "protected": "{protected}"}}]'
    return body, body[:length] + sig.encode() + body[length:]


def test_signed_manifest_digest_is_of_the_payload() -> None:
    body, signed = _sign(DOC)
    assert payload(signed) == body
    assert payload_digest(signed) == Digest.of_bytes(body)
    m = Schema1Manifest.parse(signed)
    assert m.media_type == media_types.DOCKER_SCHEMA1_SIGNED
    assert m.digest == Digest.of_bytes(body)


def test_unsigned_manifest_digest_is_of_the_bytes() -> None:
    raw = json.dumps(DOC).encode()
    m = Schema1Manifest.parse(raw)
    assert m.media_type == media_types.DOCKER_SCHEMA1
    assert m.digest == Digest.of_bytes(raw)


def test_layers_bottom_first_duplicates_and_throwaway_skipped() -> None:
    m = Schema1Manifest.parse(_sign(DOC)[1])
    assert [str(d) for d in m.layer_digests] == [_d(1), _d(2)]
    assert [lay.media_type for lay in m.layers()] == [media_types.DOCKER_LAYER_GZIP] * 2
    hist = m.history
    assert [h.empty_layer for h in hist] == [False, False, True]
    assert hist[1].created_by == "/bin/sh -c #(nop) ADD file"
    assert (m.name, m.tag, m.architecture) == ("library/busybox", "latest", "amd64")


def test_config_is_synthesized_from_top_v1compatibility() -> None:
    m = Schema1Manifest.parse(json.dumps(DOC).encode())
    diff_ids = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    cfg = m.to_config(diff_ids)
    assert cfg.diff_ids == tuple(diff_ids)
    assert cfg.config.cmd == ("sh",)
    assert cfg.config.env == ("PATH=/bin",)
    assert cfg.architecture == "amd64" and cfg.os == "linux"
    assert len(cfg.history) == 3 and cfg.history[2].empty_layer
    obj = json.loads(cfg.to_bytes())
    for dropped in ("id", "parent", "Size", "throwaway"):
        assert dropped not in obj
    with pytest.raises(InvalidArgument, match="needs 2 diff IDs"):
        m.to_config(diff_ids[:1])


@pytest.mark.parametrize(
    "doc,message",
    [
        (_manifest([TOP, BOTTOM], [_d(2), _d(1)]), "invalid parent ID"),
        (_manifest([BOTTOM], [_d(1), _d(2)]), "fsLayers but"),
        (_manifest([], []), "no fsLayers"),
        (_manifest([{"id": "short"}], [_d(1)]), "invalid image id"),
        ({**_manifest([BOTTOM], [_d(1)]), "schemaVersion": 2}, "schemaVersion"),
    ],
)
def test_invalid_manifests_are_refused(doc, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Schema1Manifest.parse(json.dumps(doc).encode())


def test_tampered_signature_header_is_refused() -> None:
    _body, signed = _sign(DOC)
    obj = json.loads(signed)
    obj["signatures"][0]["protected"] = _b64url(b'{"formatLength": -1, "formatTail": ""}')
    with pytest.raises(InvalidArgument, match="invalid format header"):
        payload(json.dumps(obj).encode())
