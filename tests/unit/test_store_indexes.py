"""Manifest lists as store records: put/resolve/names, GC marking through a list, and the
refusals (missing child, wrong media type, nested list, oversized list, lost edit)."""

from __future__ import annotations

import json

import pytest
from ops_image_factory import make_image

from kiln.errors import Conflict, DigestMismatch, InvalidArgument, NotFound
from kiln.oci import Digest
from kiln.oci import media_types as mt
from kiln.oci.strict_json import canonical
from kiln.store import ImageRecord, IndexRecord, Store
from kiln.store.indexes import MAX_INDEX_BYTES, MAX_INDEX_ENTRIES


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    s.blob_grace_seconds = 0
    yield s
    s.close()


def entry(store: Store, rec: ImageRecord, arch: str = "amd64") -> dict:
    return {
        "mediaType": rec.manifest_media_type,
        "digest": rec.manifest_digest,
        "size": store.blob_size(Digest.parse(rec.manifest_digest)),
        "platform": {"architecture": arch, "os": "linux"},
    }


def index_doc(*entries: dict, media_type: str = mt.OCI_INDEX) -> bytes:
    return canonical({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)})


def image_blobs(store: Store, rec: ImageRecord) -> list[str]:
    return [rec.manifest_digest, rec.config_digest, *rec.layer_blobs]


def test_schema_has_the_index_tables(store):
    assert store.schema_version >= 4  # V4 added them; later migrations keep them
    tables = {r[0] for r in store.db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"indexes", "index_names", "index_blobs"} <= tables


def test_put_and_resolve_a_named_list(store):
    a = make_image(store, ["a"])
    b = make_image(store, ["b"], architecture="arm64", variant="v8")
    raw = index_doc(entry(store, a), entry(store, b, "arm64"))
    rec = store.put_index(raw, names=["localhost/app:1"])
    assert isinstance(rec, IndexRecord)
    assert rec.digest == str(Digest.of_bytes(raw))
    assert rec.manifests == [a.manifest_digest, b.manifest_digest]
    assert store.index_bytes(rec) == raw
    assert store.resolve("app:1").id == rec.id  # short name, localhost/ as podman
    assert store.resolve(rec.id[7:19]).id == rec.id  # ID prefix
    assert store.resolve(f"localhost/app@{rec.digest}").id == rec.id
    assert store.resolve(a.id).id == a.id  # images still resolve as before
    assert store.resolve_image("app:1", "linux/arm64").id == b.id  # the list's arm64 image
    assert [r.id for r in store.list_indexes()] == [rec.id]


def test_a_name_moves_between_an_image_and_a_list(store):
    a = make_image(store, ["a"], names=["localhost/x:1"])
    rec = store.put_index(index_doc(entry(store, a)), names=["localhost/x:1"])
    assert store.names_of(a.id) == []
    assert store.resolve("x:1").id == rec.id
    store.tag("localhost/x:1", a.id)
    assert store.get_index(rec.id).names == []
    assert store.resolve("x:1").id == a.id


def test_gc_keeps_a_child_only_the_list_references(store):
    a = make_image(store, ["a"])
    b = make_image(store, ["b"], architecture="arm64")
    rec = store.put_index(index_doc(entry(store, a), entry(store, b, "arm64")), names=["l"])
    store.delete_image(b.id)  # `kiln rmi` of the arm64 image: the list still names it
    store.gc()
    for blob in image_blobs(store, b) + [rec.digest]:
        assert store.has_blob(Digest.parse(blob)), blob
    assert store.fsck() == []
    store.delete_index(rec.id)
    store.gc()
    assert not any(store.has_blob(Digest.parse(x)) for x in image_blobs(store, b))
    assert not store.has_blob(Digest.parse(rec.digest))
    assert all(store.has_blob(Digest.parse(x)) for x in image_blobs(store, a))


def test_a_child_missing_from_the_store_is_refused(store):
    a = make_image(store, ["a"])
    bogus = dict(entry(store, a), digest=str(Digest.of_bytes(b"nothing")))
    with pytest.raises(NotFound, match="not in the store"):
        store.put_index(index_doc(entry(store, a), bogus), names=["l"])
    assert store.list_indexes() == []


def test_a_child_whose_layer_is_gone_is_refused(store):
    a = make_image(store, ["a"])
    store.delete_image(a.id)
    store.delete_blob(Digest.parse(a.layer_blobs[0]))
    with pytest.raises(NotFound, match="not in the store"):
        store.put_index(index_doc(entry(store, a)))


@pytest.mark.parametrize(
    "media_type, words",
    [(mt.OCI_INDEX, "nested"), (mt.OCI_CONFIG, "can only name"), ("", "can only name")],
)
def test_a_child_of_the_wrong_media_type_is_refused(store, media_type, words):
    a = make_image(store, ["a"])
    with pytest.raises(InvalidArgument, match=words):
        store.put_index(index_doc(dict(entry(store, a), mediaType=media_type)))
    assert store.list_indexes() == []


def test_a_child_descriptor_that_lies_about_its_size_is_refused(store):
    a = make_image(store, ["a"])
    with pytest.raises(DigestMismatch):
        store.put_index(index_doc(dict(entry(store, a), size=3)))


def test_huge_lists_are_refused(store):
    a = make_image(store, ["a"])
    many = [entry(store, a)] * (MAX_INDEX_ENTRIES + 1)
    with pytest.raises(InvalidArgument, match="over the limit"):
        store.put_index(index_doc(*many))
    padded = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [],
            "annotations": {"x": "y" * MAX_INDEX_BYTES},
        }
    ).encode()
    with pytest.raises(InvalidArgument, match="limit"):
        store.put_index(padded)
    assert store.list_indexes() == []


def test_an_edit_from_a_stale_document_is_refused(store):
    a = make_image(store, ["a"])
    b = make_image(store, ["b"], architecture="arm64")
    rec = store.put_index(index_doc(entry(store, a)), names=["l"])
    store.put_index(index_doc(entry(store, b)), index_id=rec.id, expect_digest=rec.digest)
    with pytest.raises(Conflict):
        store.put_index(index_doc(), index_id=rec.id, expect_digest=rec.digest)
    assert store.get_index(rec.id).manifests == [b.manifest_digest]


def test_the_migration_keeps_an_older_store(tmp_path):
    import sqlite3

    from kiln.store.schema import MIGRATIONS

    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "kiln.db")
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()
    with Store.open(str(root)) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.list_indexes() == []
        a = make_image(s, ["a"])
        assert s.put_index(index_doc(entry(s, a)), names=["l"]).manifests == [a.manifest_digest]
