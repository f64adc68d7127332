"""kiln.store.lineage: an image's Parent found by index, as podman decides it, whatever the
number of images, in stores made before the index too."""

from __future__ import annotations

import sqlite3

import pytest
from ops_image_factory import make_image

from kiln.image.inspect import inspect_image
from kiln.store import Store

T = 1_750_000_000  # one build: every step carries the same history entries


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def parent(store, rec) -> str:
    return inspect_image(store, rec.id)["Parent"]


def bare(rec) -> str:
    return rec.id.removeprefix("sha256:")


def test_the_longest_history_prefix_wins_among_siblings_on_one_base(store):
    base = make_image(store, ["a"], created=T)
    siblings = [
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV I={i}",)) for i in range(5)
    ]
    child = make_image(store, ["a"], created=T, metadata_steps=("ENV I=3", "CMD x"))
    assert parent(store, child) == bare(siblings[3])
    assert parent(store, siblings[0]) == bare(base)
    assert parent(store, base) == ""
    grandchild = make_image(store, ["a", "b"], created=T, metadata_steps=())
    assert parent(store, grandchild) == bare(base)


def test_rewritten_history_falls_back_to_the_longest_layer_prefix(store):
    make_image(store, ["a"], created=T)
    mid = make_image(store, ["a", "b"], created=T)
    top = make_image(store, ["a", "b", "c"], created=T + 60)  # other history: no history prefix
    assert parent(store, top) == bare(mid)


def test_same_layers_and_history_is_not_a_parent(store):
    one = make_image(store, ["a"], created=T, labels={"x": "1"})
    two = make_image(store, ["a"], created=T, labels={"x": "2"})
    assert parent(store, one) == "" and parent(store, two) == ""


def test_inspect_runs_the_same_queries_with_10_or_200_images(store):
    """O(1) in the image count: the statements inspect runs do not grow with the store."""
    base = make_image(store, ["a"], created=T)

    def statements(name: str) -> int:
        seen: list[str] = []
        store.db.conn.set_trace_callback(seen.append)
        try:
            assert inspect_image(store, name)["Parent"] == bare(base)
        finally:
            store.db.conn.set_trace_callback(None)
        return len(seen)

    for i in range(10):
        make_image(store, ["a"], [f"img{i}"], created=T, metadata_steps=(f"ENV I={i}",))
    few = statements("img5")
    for i in range(10, 200):
        make_image(store, ["a"], [f"img{i}"], created=T, metadata_steps=(f"ENV I={i}",))
    assert statements("img5") == few


def test_a_store_from_before_the_index_gets_it_on_open(tmp_path):
    root = str(tmp_path / "root")
    s = Store.open(root)
    base = make_image(s, ["a"], created=T)
    make_image(s, ["a"], created=T, metadata_steps=("ENV I=1",))
    child = make_image(s, ["a", "b"], created=T, metadata_steps=("ENV I=1",))
    s.close()
    conn = sqlite3.connect(f"{root}/kiln.db", isolation_level=None)
    conn.executescript(
        "DROP INDEX image_layers_blob_missing; DROP INDEX images_top_chain;"
        "DROP INDEX images_history_key; ALTER TABLE images DROP COLUMN top_chain;"
        "ALTER TABLE images DROP COLUMN layer_count; ALTER TABLE images DROP COLUMN history_key;"
        "PRAGMA user_version = 5;"  # before V6, the lineage columns
    )
    conn.close()
    s = Store.open(root)
    try:
        assert s.db.one("SELECT COUNT(*) FROM images WHERE history_key IS NULL")[0] == 0
        assert parent(s, child) == bare(base)  # the ENV I=1 sibling has other layers
    finally:
        s.close()
