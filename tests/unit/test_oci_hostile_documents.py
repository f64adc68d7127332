"""Hostile JSON documents (manifests, configs, auth headers, registry error bodies) get a
clear refusal, never a RecursionError, an OverflowError later in SQLite, or a guess."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.api.params import decode_auth_header
from kiln.errors import InvalidArgument
from kiln.oci import Index, Manifest, strict_json
from kiln.ops.config import Config
from kiln.registry.http_errors import error_entries

CONFIG = {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": "sha256:" + "a" * 64,
    "size": 2,
}


def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("depth", [1_000, 3_000, 100_000])
def test_deep_json_is_refused_not_a_recursion_error(depth):
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        strict_json.loads(deep(depth))
    with pytest.raises(InvalidArgument):
        Manifest.parse(('{"schemaVersion": 2, "layers": ' + deep(depth) + "}").encode())


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nesting_past_the_cap_is_refused_and_many_shallow_brackets_are_not(as_bytes):
    over = deep(strict_json.MAX_DEPTH + 1)
    wide = json.dumps({"history": [{"created_by": f"RUN {i} [x] {{y}}"} for i in range(500)]})
    brackets_in_strings = json.dumps({"a": "[{" * 200, "b": [[[[1]]]]})
    for doc in (over, wide, brackets_in_strings, deep(strict_json.MAX_DEPTH)):
        data = doc.encode() if as_bytes else doc
        if doc is over:
            with pytest.raises(InvalidArgument, match=f"more than {strict_json.MAX_DEPTH}"):
                strict_json.loads(data)
        else:
            assert strict_json.loads(data) == json.loads(doc)


def test_descriptor_size_beyond_int64_is_refused():
    for size in (2**63, 2**64, -1):
        doc = {"schemaVersion": 2, "config": dict(CONFIG, size=size), "layers": []}
        with pytest.raises(InvalidArgument, match="manifest.config has no valid size"):
            Manifest.parse(json.dumps(doc).encode())
    doc = {"schemaVersion": 2, "config": dict(CONFIG, size=2**63 - 1), "layers": []}
    assert Manifest.parse(json.dumps(doc).encode()).config.size == 2**63 - 1


@pytest.mark.parametrize("media_type", ["", "application/vnd.oci.image.manifest.v1+json"])
def test_a_document_that_is_both_index_and_manifest_is_refused(media_type):
    """CVE-2021-41190: no reader may choose between the two readings."""
    doc = {"schemaVersion": 2, "config": CONFIG, "layers": [], "manifests": []}
    if media_type:
        doc["mediaType"] = media_type
    raw = json.dumps(doc).encode()
    for parse in (Manifest.parse, Index.parse):
        with pytest.raises(InvalidArgument, match="ambiguous"):
            parse(raw)


def test_deep_registry_auth_header_is_a_400(tmp_path):
    header = base64.urlsafe_b64encode(deep(3000).encode()).decode()
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        decode_auth_header(header)
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as client:
        r = client.post(
            "/images/create",
            params={"fromImage": "127.0.0.1:9/x", "tag": "1"},
            headers={"X-Registry-Auth": header},
        )
    assert r.status_code == 400, r.text
    assert "X-Registry-Auth" in r.json()["message"]


def test_deep_registry_error_body_is_no_error_entries():
    assert error_entries(("{" + '"errors":' * 1 + deep(5000) + "}").encode()) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (deep(3000).encode(), "nested too deeply"),
        (b'{"images":[],"images":[]}', 'duplicate key "images"'),
        (b"not json", "Expecting value"),
        (b"[1]", "must be a JSON object"),
    ],
    ids=["deep", "duplicate-key", "not-json", "not-an-object"],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_malformed_manifest_list_body_is_a_400(tmp_path, body, why, method):
    """libpod's manifest add and modify answered 500, an internal error, to these."""
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    path = "/v4.0.0/libpod/manifests/localhost/list:1"
    with TestClient(create_app(config)) as client:
        assert client.post(path).status_code == 201  # the list, made
        r = client.request(method, path + ("/add" if method == "POST" else ""), content=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("the manifest list body "), r.text
    assert why in r.json()["message"], r.text
