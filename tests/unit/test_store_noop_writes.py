"""What changes nothing writes nothing (a real SQLite store, traced): a cache hit whose
entry was used a moment ago, a trim with nothing put or nothing past the bounds, a tag
the name already has and a lease nothing joined take no write lock. A fully cached build
is made of these."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from kiln.store import ImageRecord, Store
from kiln.store.cache import TOUCH_AFTER
from sql_trace import statements_during


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    s.blob_grace_seconds = 0  # only a lease keeps an unreferenced blob
    yield s
    s.close()


def writes_of(store: Store, work: Callable[[], object]) -> list[str]:
    """The write transactions ``work`` begins on this thread's connection."""
    return [s for s in statements_during(store, work) if s.startswith("BEGIN IMMEDIATE")]


def _last_used(store: Store, key: str) -> float:
    return float(store.db.value("SELECT last_used FROM build_cache WHERE key=?", (key,)))


def _put_image(store: Store) -> str:
    """An image (a config blob and its row): what a name can point at."""
    config = store.put_bytes(b'{"rootfs":{"type":"layers","diff_ids":[]}}')
    manifest = store.put_bytes(b'{"schemaVersion":2}')
    rec = ImageRecord(
        id=str(config), manifest_digest=str(manifest),
        manifest_media_type="application/vnd.oci.image.manifest.v1+json",
        config_digest=str(config), created="2024-01-01T00:00:00Z", size=0, layers=[],
        platform="linux/amd64", layer_blobs=[],
    )  # fmt: skip
    store.put_image(rec, history=())
    return rec.id


def test_a_cache_hit_marks_its_entry_used_unless_it_just_was(store):
    image_id = _put_image(store)
    store.put_cache("k", image_id)
    store.db.execute("UPDATE build_cache SET last_used=? WHERE key='k'", (time.time() - 3600,))
    before = time.time()
    assert store.get_cache("k") == image_id
    assert _last_used(store, "k") >= before  # an hour old: marked used now
    assert writes_of(store, lambda: store.get_cache("k")) == []  # used a moment ago
    stale = time.time() - TOUCH_AFTER - 1
    store.db.execute("UPDATE build_cache SET last_used=? WHERE key='k'", (stale,))
    assert len(writes_of(store, lambda: store.get_cache("k"))) == 1
    assert store.get_cache("missing") is None


def test_a_trim_after_no_put_takes_no_write_lock(store):
    store.inputs_per_locator = 1
    assert writes_of(store, lambda: store.trim_cache_inputs(if_put=True)) == []
    for n in range(3):
        store.put_cache_inputs(f"k{n}", "step", "RUN", {"n": n}, trim=False)
    store.trim_cache_inputs(if_put=True)
    assert [r[0] for r in store.db.query("SELECT key FROM cache_inputs")] == ["k2"]
    assert writes_of(store, lambda: store.trim_cache_inputs(if_put=True)) == []
    assert len(writes_of(store, store.trim_cache_inputs)) == 1  # asked outright: it trims


def test_a_build_end_trim_with_nothing_past_the_bounds_takes_no_write_lock(store):
    store.inputs_per_locator, store.inputs_max = 2, 3
    for n in range(2):
        store.put_cache_inputs(f"k{n}", "step", "RUN", {"n": n}, trim=False)
    assert writes_of(store, lambda: store.trim_cache_inputs(if_put=True)) == []
    store.put_cache_inputs("o", "other", "RUN", {}, trim=False)  # 3 rows in all: still within
    assert writes_of(store, lambda: store.trim_cache_inputs(if_put=True)) == []
    store.put_cache_inputs("k2", "step", "RUN", {"n": 2}, trim=False)  # a third for "step"
    assert len(writes_of(store, lambda: store.trim_cache_inputs(if_put=True))) == 1
    assert sorted(r[0] for r in store.db.query("SELECT key FROM cache_inputs")) == ["k1", "k2", "o"]
    store.inputs_per_locator = 5
    store.put_cache_inputs("p", "third", "RUN", {}, trim=False)  # 4 rows in all: one too many
    assert len(writes_of(store, lambda: store.trim_cache_inputs(if_put=True))) == 1
    assert store.db.value("SELECT COUNT(*) FROM cache_inputs") == 3


def test_tagging_a_name_already_on_the_image_takes_no_write_lock(store):
    image_id = _put_image(store)
    store.tag("localhost/app:1", image_id)
    assert writes_of(store, lambda: store.tag("localhost/app:1", image_id)) == []
    assert store.resolve_image("localhost/app:1").id == image_id


def test_a_lease_writes_its_row_with_its_first_join_and_only_then(store):
    def unjoined() -> None:
        with store.lease():
            pass

    assert writes_of(store, unjoined) == []
    with store.lease() as lease:
        assert store.db.value("SELECT COUNT(*) FROM leases") == 0
        with pytest.raises(RuntimeError), store.transaction():
            store.put_bytes(b"rolled back")
            raise RuntimeError("the first join's transaction rolls back")
        digest = store.put_bytes(b"kept while the lease is open")
        assert store.db.value("SELECT COUNT(*) FROM leases WHERE id=?", (lease.id,)) == 1
        owner = store.db.value("SELECT owner FROM lease_owners WHERE lease_id=?", (lease.id,))
        assert owner  # a killed process's lease is found and cleared by its owner
        store.gc()
        assert store.has_blob(digest)  # held by the lease
    assert store.db.value("SELECT COUNT(*) FROM leases") == 0
    store.gc()
    assert not store.has_blob(digest)  # released: nothing holds it any more
