"""``POST /libpod/system/check`` (podman 5's route): podman's report keys, and repair."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.store import Store


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", "copy")  # no overlay probe (no mounts here)
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "runtime"))
    with TestClient(create_app(Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path)))) as c:
        yield c


def _import(client) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    r = client.post("/v1.41/images/create?fromSrc=-&repo=x&tag=1", content=buf.getvalue(),
                    headers={"Content-Type": "application/x-tar"})  # fmt: skip
    assert r.status_code == 200, r.text
    return json.loads(r.text.splitlines()[-1])["status"]


def test_clean_store(client):
    _import(client)
    r = client.post("/v4.0.0/libpod/system/check")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["Errors"] is False and body["Images"] == {} and body["RemovedImages"] == {}
    assert body["checked"]["images"] == 1 and body["clean"] is True


def test_a_corrupt_config_is_reported_then_repaired(client, tmp_path):
    image_id = _import(client)
    path = os.path.join(str(tmp_path / "root"), "blobs", "sha256", image_id.split(":")[-1])
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[5] ^= 0x20
    with open(path, "wb") as f:
        f.write(bytes(data))
    body = client.post("/libpod/system/check").json()
    assert body["Errors"] is True and not body["clean"]
    assert any(image_id.endswith(k.split(":")[-1]) for k in body["Images"])
    assert client.post("/libpod/system/check?quick=true").json()["Errors"] is False
    repaired = client.post("/libpod/system/check?repair=true").json()
    assert repaired["clean"] and list(repaired["RemovedImages"]) == list(body["Images"])
    assert client.post("/libpod/system/check").json()["Errors"] is False
    assert client.get("/v1.41/images/json").json() == []


def test_a_stale_lease_is_listed_and_removed(client, tmp_path):
    with Store.open(str(tmp_path / "root")) as store, store.db.transaction() as conn:
        conn.execute("INSERT INTO leases(id, created, expires) VALUES ('l1', 1, ?)",
                     (time.time() - 5,))  # fmt: skip
    body = client.post("/libpod/system/check").json()
    assert [f["subject"] for f in body["findings"] if f["kind"] == "lease"] == ["l1"]
    assert client.post("/libpod/system/check?repair=true").json()["removed"] == {"lease": 1}
