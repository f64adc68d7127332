"""``GET /images/json`` and ``/libpod/images/json`` answer a repeated list from memory
while nothing was committed to the store, and make it afresh after any commit: the
server's own, or another process's (here: another connection to the database)."""

from __future__ import annotations

import sqlite3

import pytest
from ops_image_factory import make_image
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.store import Store
from kiln.util import sqlite as store_db

LISTS = ("/v1.41/images/json", "/v4.0.0/libpod/images/json", "/v1.41/images/json?all=1")


@pytest.fixture
def served(tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    store = Store.open(root)  # another process's connection, as far as the server knows
    make_image(store, ["base"], ["localhost/a:1"], labels={"k": "1"})
    statements: list[str] = []
    real_connect = store_db.connect

    def connect(path: str) -> sqlite3.Connection:
        conn = real_connect(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(store_db, "connect", connect)
    with TestClient(create_app(Config(root=root, tmpdir=str(tmp_path)))) as client:
        yield client, store, statements
    store.close()


def names(body: list[dict]) -> set[str]:
    return {n for image in body for n in image.get("RepoTags") or []}


@pytest.mark.timeout(120)
def test_a_repeated_list_reads_no_image_rows(served) -> None:
    client, _store, statements = served
    for route in LISTS:
        first = client.get(route)
        first.raise_for_status()
        statements.clear()
        again = client.get(route)
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
        assert not [s for s in statements if "images" in s], statements


@pytest.mark.timeout(120)
def test_a_list_after_a_commit_elsewhere_shows_it(served) -> None:
    client, store, _ = served
    for route in LISTS:
        assert "localhost/a:1" in names(client.get(route).json())
    rec = make_image(store, ["base", "more"], ["localhost/b:1"])
    for route in LISTS:
        assert {"localhost/a:1", "localhost/b:1"} <= names(client.get(route).json())
    store.tag("localhost/c:1", rec.id)
    store.set_image_labels({rec.id: {"new": "yes"}})
    for route in LISTS:
        body = client.get(route).json()
        assert "localhost/c:1" in names(body)
        assert [i["Labels"] for i in body if "localhost/b:1" in i["RepoTags"]] == [{"new": "yes"}]


@pytest.mark.timeout(120)
def test_a_list_after_the_servers_own_change_shows_it(served) -> None:
    client, _store, _ = served
    assert names(client.get("/v1.41/images/json").json()) == {"localhost/a:1"}
    assert client.post("/v1.41/images/localhost/a:1/tag?repo=localhost/t&tag=2").status_code == 201
    assert names(client.get("/v1.41/images/json").json()) == {"localhost/a:1", "localhost/t:2"}
    assert client.delete("/v1.41/images/localhost/t:2").status_code == 200
    assert names(client.get("/v1.41/images/json").json()) == {"localhost/a:1"}


@pytest.mark.timeout(120)
def test_filters_and_versions_are_lists_of_their_own(served) -> None:
    client, store, _ = served
    make_image(store, ["base", "x"], ["localhost/x:1"], labels={"k": "2"})
    both = names(client.get("/v1.41/images/json").json())
    one = client.get('/v1.41/images/json?filters={"label":["k=2"]}').json()
    assert both == {"localhost/a:1", "localhost/x:1"} and names(one) == {"localhost/x:1"}
    assert "VirtualSize" in client.get("/v1.41/images/json").json()[0]
    assert "VirtualSize" not in client.get("/v1.44/images/json").json()[0]
    # a duration ago follows the clock: made afresh each time, never kept
    assert names(client.get('/v1.41/images/json?filters={"until":["1s"]}').json()) == both
