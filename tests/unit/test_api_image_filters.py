"""Image list and prune filters over the API in process: ``until`` and ``label!`` (Docker, libpod)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config


@pytest.fixture
def client(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        yield c


def import_image(client, repo: str, label: str = "") -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(repo)
        tf.addfile(info, io.BytesIO(b""))
    changes = f"&changes={quote('LABEL ' + label)}" if label else ""
    r = client.post(f"/v1.41/images/create?fromSrc=-&repo={repo}&tag=1{changes}",
                    content=buf.getvalue())  # fmt: skip
    assert r.status_code == 200, r.text
    return json.loads(r.text.splitlines()[-1])["status"]


def listed(client, path: str, filters: dict) -> list[str]:
    r = client.get(f"{path}?filters={quote(json.dumps(filters))}")
    assert r.status_code == 200, r.text
    return sorted(i["Id"].removeprefix("sha256:") for i in r.json())


@pytest.mark.parametrize("path", ["/v1.44/images/json", "/v4.3.1/libpod/images/json"])
def test_list_label_not_and_until(client, path):
    tagged = import_image(client, "tagged", "tier=base").removeprefix("sha256:")
    plain = import_image(client, "plain").removeprefix("sha256:")
    assert listed(client, path, {"label!": ["tier"]}) == [plain]
    assert listed(client, path, {"label!": ["tier=app"]}) == sorted([tagged, plain])
    assert listed(client, path, {"until": ["2000-01-01T00:00:00Z"]}) == []
    future = str(int(time.time()) + 3600)
    assert listed(client, path, {"until": [future]}) == sorted([tagged, plain])
    assert listed(client, path, {"until": ["-1h"]}) == sorted([tagged, plain])
    r = client.get(f"{path}?filters={quote(json.dumps({'until': ['someday']}))}")
    assert r.status_code == 400 and "until=someday" in r.json()["message"]


def test_a_malformed_reference_pattern_fails_a_docker_listing_not_a_libpod_one(client):
    # dockerd 20.10 answers 500 "syntax error in pattern" (with or without images); podman
    # 4.3 lists nothing
    for images in ([], [import_image(client, "base")]):
        r = client.get(f"/v1.41/images/json?filters={quote(json.dumps({'reference': ['[bad']}))}")
        assert (r.status_code, r.json()) == (500, {"message": "syntax error in pattern"}), images
        assert listed(client, "/v4.3.1/libpod/images/json", {"reference": ["[bad"]}) == []


def test_prune_until_and_label_filters(client):
    keep = import_image(client, "keep", "keep=yes")
    drop = import_image(client, "drop")
    never = {"until": ["2000-01-01"], "dangling": ["false"]}
    r = client.post(f"/v1.44/images/prune?filters={quote(json.dumps(never))}")
    assert r.status_code == 200 and r.json()["ImagesDeleted"] is None
    filters = {"label!": ["keep"], "until": ["-1h"], "dangling": ["false"]}
    r = client.post(f"/v1.44/images/prune?filters={quote(json.dumps(filters))}")
    assert r.status_code == 200, r.text
    assert {"Deleted": drop} in r.json()["ImagesDeleted"]
    assert [i["Id"] for i in client.get("/v1.44/images/json").json()] == [keep]
    filters = {"label": ["keep=yes"], "dangling": ["false"]}
    r = client.post(f"/v1.44/images/prune?filters={quote(json.dumps(filters))}")
    assert {"Deleted": keep} in r.json()["ImagesDeleted"]
    r = client.post(f"/v1.44/images/prune?filters={quote(json.dumps({'colour': ['red']}))}")
    assert r.status_code == 400
    assert "invalid filter" in r.json()["message"] and "colour" in r.json()["message"]
