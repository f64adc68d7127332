"""DELETE of an image with child images: the Docker route answers as dockerd (never by
ID, even forced; by its last name only untagged), libpod's as podman 4.3 (deleted, its
data staying for the children, reported untagged); both delete the parents a removal
leaves dangling, and Docker's noprune keeps them."""

from __future__ import annotations

import pytest
from ops_image_factory import make_image
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.store import Store

T = 1_750_000_000  # one build: each image's history extends its parent's


@pytest.fixture
def made(tmp_path):
    """(client, base ID, app ID): base:1 and app:1 one layer above it."""
    root = str(tmp_path / "root")
    store = Store.open(root)
    base = make_image(store, ["a"], ["base:1"], created=T).id
    app = make_image(store, ["a", "b"], ["app:1"], created=T).id
    store.close()
    with TestClient(create_app(Config(root=root, tmpdir=str(tmp_path)))) as client:
        yield client, base, app


def _exists(client, image_id: str) -> bool:
    return client.get(f"/v1.41/images/{image_id}/json").status_code == 200


def test_the_docker_route_keeps_a_parent_of_child_images(made):
    client, base, app = made
    for query in ("", "?force=1"):
        r = client.delete(f"/v1.41/images/{base}{query}")
        assert r.status_code == 409 and "has dependent child images" in r.json()["message"]
    r = client.delete("/v1.41/images/base:1")
    assert r.status_code == 200 and r.json() == [{"Untagged": "base:1"}]
    assert _exists(client, base)
    r = client.delete("/v1.41/images/app:1")  # base is dangling now: it goes too
    assert r.json() == [{"Untagged": "app:1"}, {"Deleted": app}, {"Deleted": base}]
    assert not _exists(client, base)


def test_dockers_noprune_keeps_the_dangling_parent(made):
    client, base, app = made
    client.delete("/v1.41/images/base:1")
    r = client.delete("/v1.41/images/app:1?noprune=1")
    assert r.json() == [{"Untagged": "app:1"}, {"Deleted": app}]
    assert _exists(client, base)


def test_the_libpod_route_deletes_a_parent_of_child_images(made):
    client, base, app = made
    r = client.delete("/v4.3.1/libpod/images/base:1")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["Untagged"] == ["docker.io/library/base:1"] and not report["Deleted"]
    assert not _exists(client, base) and _exists(client, app)
    assert client.get(f"/v4.3.1/libpod/images/{app}/json").json()["Parent"] == ""
