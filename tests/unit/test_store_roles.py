"""The Store facade composes small roles over one Database: every public method of a
role is reachable as ``store.x`` (what callers outside the store use), each role is
reachable as an attribute, and a setting set through the facade lands on that store's
role only."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from kiln.store import Store

ROLES = ("leases", "content", "images", "lineage", "indexes", "resolver", "containers",
         "cache", "cache_mounts", "build_records", "events", "maintenance")  # fmt: skip
# role methods the roles use among themselves or the facade exposes under another name
INTERNAL = {"open", "current", "join_blobs", "join_image", "fill_layer_blobs", "fill",
            "by_reference", "by_prefix"}  # fmt: skip


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "root")) as s:
        yield s


def test_every_public_role_method_is_on_the_facade(store: Store) -> None:
    missing = []
    for name in ROLES:
        role = getattr(store, name)
        assert getattr(role, "db", store.db) is store.db  # one database for all
        for attr, _ in inspect.getmembers(type(role), inspect.isfunction):
            if attr.startswith("_") or attr in INTERNAL:
                continue
            bound = getattr(store, attr, None)
            if getattr(bound, "__self__", None) is not role:
                missing.append(f"{name}.{attr}")
    assert missing == []
    assert getattr(store.current_lease, "__self__", None) is store.leases


def test_settings_set_on_the_facade_reach_this_store_only(store: Store, tmp_path) -> None:
    with Store.open(str(tmp_path / "other")) as other:
        store.blob_grace_seconds = 0
        store.build_records_max = 3
        store.inputs_per_locator = 1
        assert store.maintenance.blob_grace_seconds == 0
        assert store.build_records.build_records_max == 3
        assert store.cache.inputs_per_locator == 1
        assert other.blob_grace_seconds == 600 and other.build_records_max == 200
        junk = store.put_bytes(b"junk")
        kept = other.put_bytes(b"junk")
        assert store.gc().blobs_removed == 1 and not store.has_blob(junk)
        assert other.gc().blobs_removed == 0 and other.has_blob(kept)
