"""``/info``, ``/images/json``, ``/libpod/images/json`` and ``/libpod/info`` cost a fixed
number of SQLite queries, however many images the store holds (they used to cost three
per image). Counted with SQLite's trace callback on every connection, in process."""

from __future__ import annotations

import sqlite3

import pytest
from ops_image_factory import make_image
from starlette.testclient import TestClient

from kiln.api import listing_cache, wiring
from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.ops.context import Context
from kiln.store import Store
from kiln.util import sqlite as store_db

ROUTES = ("/v1.41/info", "/v1.41/images/json", "/v4.0.0/libpod/images/json",
          "/v4.0.0/libpod/info")  # fmt: skip


def _counts(tmp_path, monkeypatch, images: int) -> dict[str, int]:
    root = tmp_path / f"root-{images}"
    store = Store.open(str(root))
    for n in range(images):
        # each on the one shared base, half with a layer of their own, all named
        layers = ["base", f"own-{n}"] if n % 2 else ["base"]
        make_image(store, layers, [f"localhost/img-{n}:1"], labels={"n": str(n)})
    statements: list[str] = []

    def trace(sql: str) -> None:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(sql)

    real_connect = store_db.connect

    def connect(path: str) -> sqlite3.Connection:
        conn = real_connect(path)
        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(store_db, "connect", connect)
    monkeypatch.setattr(listing_cache, "MAX_ENTRIES", 0)  # every list made afresh
    for conn in list(store.db._all):
        conn.set_trace_callback(trace)
    # every worker thread uses this one store (each thread still gets its own connection)
    monkeypatch.setattr(
        wiring,
        "thread_context",
        lambda config: Context(store=store, config=config, borrowed_store=True),
    )
    out: dict[str, int] = {}
    config = Config(root=str(root), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as client:
        for route in ROUTES:
            client.get(route).raise_for_status()  # warm: anything done once per process
            statements.clear()
            body = client.get(route)
            body.raise_for_status()
            out[route] = len(statements)
            if route.endswith("images/json"):
                assert len(body.json()) == images
            elif route == "/v1.41/info":
                assert body.json()["Images"] == images
    store.close()
    return out


@pytest.mark.timeout(120)
def test_listing_and_info_queries_do_not_grow_with_the_image_count(tmp_path, monkeypatch):
    few = _counts(tmp_path, monkeypatch, 4)
    many = _counts(tmp_path, monkeypatch, 40)
    assert many == few, (few, many)
    for route, count in many.items():
        assert count <= 12, (route, count)
