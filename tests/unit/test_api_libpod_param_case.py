"""libpod routes match query parameter names in any case, as podman's server does (its
schema decoder folds case); Docker's routes keep Docker's spelling. In process
(starlette's TestClient, no sockets)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from archive_corpus import REG, tar_of
from kiln.api.app import create_app
from kiln.api.params import fold_query_names
from kiln.ops.config import Config

ONE_FILE = tar_of(("hello", REG, b"hi\n"))  # a layer of one file


@pytest.fixture
def client(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        yield c


def test_folding_lowers_names_and_keeps_values():
    raw = b"tlsVerify=False&Reference=Busybox%3A1&ALL&x=A%3DB"
    assert fold_query_names(raw) == b"tlsverify=False&reference=Busybox%3A1&all&x=A%3DB"


def test_libpod_names_in_any_case_are_the_same_parameter(client):
    r = client.post("/v4.3.1/libpod/images/import?Reference=localhost/case:1", content=ONE_FILE)
    assert r.status_code == 200, r.text
    assert client.get("/v4.3.1/libpod/images/localhost/case:1/exists").status_code == 204
    r = client.post("/v4.3.1/libpod/images/localhost/case:1/tag?REPO=localhost/other&Tag=2")
    assert r.status_code == 201, r.text
    assert client.get("/v4.3.1/libpod/images/localhost/other:2/exists").status_code == 204
    r = client.delete("/v4.3.1/libpod/images/remove?IMAGES=localhost/other:2&Force=TRUE")
    assert r.status_code == 200, r.text
    r = client.get("/v4.3.1/libpod/images/localhost/other:2/exists")
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "localhost/other:2: image not known"
    # a bad value is refused as before, whatever the name's case
    r = client.delete("/v4.3.1/libpod/images/remove?IMAGES=localhost/case:1&FORCE=maybe")
    assert r.status_code == 400 and "maybe" in r.json()["message"], r.text


def test_docker_routes_keep_dockers_spelling(client):
    # Docker's server reads fromImage as written: a lower-case name is not it
    r = client.post("/v1.41/images/create?fromimage=localhost/case:1")
    assert r.status_code == 400, r.text


def test_libpod_import_takes_the_platform_podman_sends(client):
    # podman import --arch arm64 --variant v8: its bindings send architecture and variant
    q = "reference=localhost/plat:1&architecture=arm64&Variant=v8"
    assert client.post(f"/v4.3.1/libpod/images/import?{q}", content=ONE_FILE).status_code == 200
    info = client.get("/v4.3.1/libpod/images/localhost/plat:1/json").json()
    assert (info["Os"], info["Architecture"]) == ("linux", "arm64"), info
    r = client.post("/v4.3.1/libpod/images/import?architecture=arm64/v8/x", content=ONE_FILE)
    assert r.status_code == 400 and "arm64/v8/x" in r.json()["message"], r.text
