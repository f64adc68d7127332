"""What one ``image inspect`` costs the store: each blob it needs (manifest, config) is read
once, and a few indexed statements answer it, Parent included. ``kiln serve`` answers
every ``docker image inspect`` this way, so the cost is per request under load."""

from __future__ import annotations

import os

import pytest
from ops_image_factory import blob_reads, image_store, make_image  # noqa: F401

from kiln.errors import DigestMismatch, NotFound
from kiln.image import register_image
from kiln.image.inspect import inspect_image, inspect_store_image
from kiln.image.store_image import open_store_image
from kiln.oci import Descriptor, Digest, ImageConfig, Manifest
from kiln.oci import media_types as mt

T = 1_750_000_000


@pytest.fixture
def store(image_store):  # noqa: F811
    return image_store


def _inspect(store, name: str) -> tuple[dict, list[str], list[str]]:
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        with blob_reads() as blobs:
            data = inspect_image(store, name)
    finally:
        store.db.conn.set_trace_callback(None)
    return data, blobs, statements


@pytest.mark.parametrize("steps", [("ENV I=1",), ()], ids=["metadata-step", "layer-step"])
def test_inspect_reads_each_blob_once_and_runs_few_statements(store, steps):
    base = make_image(store, ["a"], created=T)
    layers = ["a"] if steps else ["a", "b"]
    child = make_image(store, layers, ["localhost/child:1"], created=T, metadata_steps=steps)
    for i in range(20):  # siblings on the same base, sharing its history prefix
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV S={i}",))
    data, blobs, statements = _inspect(store, "localhost/child:1")
    assert data["Parent"] == base.id.removeprefix("sha256:")
    assert data["Id"] == child.id.removeprefix("sha256:")
    config = child.config_digest.split(":")[1]
    manifest = child.manifest_digest.split(":")[1]
    assert sorted(b.rsplit("/", 1)[1] for b in blobs) == sorted([config, manifest]), blobs
    # the image by name with its layers, repo digests and names in one statement, and the
    # parent by history key: two (the parent's own record is not needed, only its ID)
    assert len(statements) <= 2, statements


def _annotated(store, names: list[str]):
    """An image whose manifest carries annotations (what ``make_image`` does not make)."""
    base = make_image(store, ["a"], created=T)
    config_raw = store.blob_bytes(_digest(base.config_digest), 1 << 20)
    config = ImageConfig.parse(config_raw)
    layers = [Descriptor(mt.OCI_LAYER, _digest(b), store.blob_size(_digest(b)))
              for b in base.layer_blobs]  # fmt: skip
    cdesc = Descriptor(mt.OCI_CONFIG, _digest(base.config_digest), len(config_raw))
    manifest = Manifest.build(mt.OCI_MANIFEST, cdesc, layers, {"org.example/k": "v", "a": "b"})
    store.put_bytes(manifest.raw)
    return register_image(store, manifest, config, names)


def _digest(value: str) -> Digest:
    return Digest.parse(value)


def test_inspect_answers_what_the_fully_parsed_image_answers(store):
    rec = _annotated(store, ["localhost/x:1", "docker.io/library/y:2", "localhost:5000/z/w:3"])
    store.add_repo_digest(rec.id, f"docker.io/library/y@{rec.manifest_digest}")
    make_image(store, ["a", "b"], ["localhost/child:1"], created=T)
    for name in ("localhost/x:1", rec.id, "localhost/child:1"):
        data = inspect_image(store, name)
        assert data == inspect_store_image(store, open_store_image(store, name)), name
    data = inspect_image(store, "localhost/x:1")
    assert data["Annotations"] == {"org.example/k": "v", "a": "b"}
    # only the repository it was recorded in (pulled or pushed as), no name paired with it
    assert data["RepoDigests"] == [f"docker.io/library/y@{rec.manifest_digest}"]


def test_inspect_of_a_damaged_image_says_what_is_wrong(store):
    rec = make_image(store, ["a"], ["localhost/bad:1"], created=T)
    config_path = store.blob_path(_digest(rec.config_digest))
    with open(config_path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b"amd64", b"arm64"))
    with pytest.raises(DigestMismatch, match="image config does not match its digest"):
        inspect_image(store, "localhost/bad:1")
    other = make_image(store, ["b"], ["localhost/lost:1"], created=T)
    os.unlink(store.blob_path(_digest(other.manifest_digest)))
    with pytest.raises(NotFound, match="the store has lost blob"):
        inspect_image(store, "localhost/lost:1")


def test_inspect_of_a_damaged_manifest_says_so(store):
    """The manifest is checked against its digest (inspect no longer parses one without
    annotations, so the parse cannot be what notices)."""
    rec = make_image(store, ["a"], ["localhost/badm:1"], created=T)
    path = store.blob_path(_digest(rec.manifest_digest))
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b"schemaVersion", b"schemaVersiom"))
    with pytest.raises(DigestMismatch, match="manifest does not match its digest"):
        inspect_image(store, "localhost/badm:1")


def test_annotations_are_read_however_the_manifest_spells_them(store):
    """A key written with a JSON escape is still the key: such a manifest is parsed."""
    from kiln.image.inspect import _annotations

    assert _annotations(b'{"schemaVersion":2,"layers":[]}') == {}
    assert _annotations(b'{"annotations":{"a":"1"}}') == {"a": "1"}
    assert _annotations(b'{"\\u0061nnotations":{"b":"2"}}') == {"b": "2"}
