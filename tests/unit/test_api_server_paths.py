"""A remote client cannot make ``kiln serve`` read or write files on the server's disk
through a pull's source or a push's destination: the libpod routes take registry
references only, as podman's server does (400, "only docker transport is supported"),
and nothing is read or written; the Docker routes name registries by construction.
``kiln pull``/``kiln push`` on the command line keep every transport. In process
(starlette's TestClient, no sockets)."""

from __future__ import annotations

import io
import tarfile

import pytest
from starlette.testclient import TestClient

from archive_corpus import REG, tar_of
from kiln.api.app import create_app
from kiln.ops.config import Config

V = "/v4.3.1/libpod"
REFUSED = "only docker transport is supported"

ONE_FILE = tar_of(("hello", REG, b"hi\n"))  # a layer of one file


@pytest.fixture
def client(tmp_path):
    """A store with localhost/p:1 and the list localhost/ml:1 of it."""
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        r = c.post(f"{V}/images/import?reference=localhost/p:1", content=ONE_FILE)
        assert r.status_code == 200, r.text
        r = c.post(f"{V}/manifests/localhost/ml:1?images=localhost/p:1")
        assert r.status_code == 201, r.text
        yield c


def _image_ids(client) -> list[str]:
    return sorted(i["Id"] for i in client.get(f"{V}/images/json?all=true").json())


@pytest.fixture
def layout(client, tmp_path):
    """An OCI layout of localhost/p:1 on the (server's) disk, tagged "x"."""
    r = client.get(f"{V}/images/localhost/p:1/get?format=oci-dir")
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        tf.extractall(tmp_path / "layout", filter="data")
    assert (tmp_path / "layout" / "index.json").exists()
    return tmp_path / "layout"


@pytest.mark.parametrize("transport", ["oci", "oci-archive", "docker-archive", "dir"])
def test_libpod_push_refuses_a_path_and_writes_nothing(client, tmp_path, transport):
    target = tmp_path / "out"
    r = client.post(f"{V}/images/localhost/p:1/push?destination={transport}:{target}")
    assert r.status_code == 400, r.text
    assert REFUSED in r.json()["message"] and transport in r.json()["message"]
    assert not target.exists()


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_manifest_push_refuses_a_path_and_writes_nothing(client, tmp_path, transport):
    target = tmp_path / "out"
    r = client.post(f"{V}/manifests/localhost/ml:1/registry/{transport}:{target}")
    assert r.status_code == 400, r.text
    assert REFUSED in r.json()["message"]
    assert not target.exists()


def test_libpod_pull_refuses_a_layout_on_the_server(client, layout):
    before = _image_ids(client)
    for reference in (f"oci:{layout}:x", f"dir:{layout}", f"oci:{layout}"):
        r = client.post(f"{V}/images/pull?reference={reference}")
        assert r.status_code == 400, r.text
        assert REFUSED in r.json()["message"]
    assert _image_ids(client) == before


def test_docker_pull_and_push_name_registries_only(client, layout):
    before = _image_ids(client)
    r = client.post(f"/v1.41/images/create?fromImage=oci:{layout}&tag=x")
    assert r.status_code == 400, r.text
    r = client.post(f"/v1.41/images/create?fromImage=dir:{layout}")
    assert r.status_code == 400, r.text
    assert _image_ids(client) == before
    r = client.post(f"/v1.41/images/oci:{layout}/push")
    assert r.status_code in (400, 404), r.text
