"""Two images with the same layer in different encodings each keep their own blob.

The store used to keep one blob per chain ID: loading a second image whose layer has
the same content (same diff_id, so the same chain ID) but another encoding (gzip vs
uncompressed vs zstd) repointed that record, and the next GC deleted the first
image's blob while the image stayed tagged ("blob not found" on save, push, build).
"""

from __future__ import annotations

import gzip
import os
import tarfile
import time

import pytest
import zstandard

from hostile_images import image, oci_archive, oci_index, oci_manifest, plain_layer, sha
from kiln.image import open_store_image, validate_image
from kiln.ops import archives
from kiln.ops import images as ops
from kiln.ops.config import Config
from kiln.ops.context import Context
from kiln.ops.events import ListSink

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER = plain_layer("etc/motd", b"same content, three encodings\n" * 64)


def encode(kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(LAYER, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(LAYER)
    return LAYER


def archive_of(kind: str, tmp_path) -> str:
    """An oci-archive tagged ``enc:<kind>`` whose one layer is LAYER encoded as ``kind``."""
    blob = encode(kind)
    img = image([blob], diff_ids=[sha(LAYER)], config_extra={"config": {"Labels": {"enc": kind}}})
    if kind == "zstd":
        img.layer_types[0] = OCI_LAYER_ZSTD
    manifest = oci_manifest(img)
    data = oci_archive(img, manifest=manifest, index=oci_index(manifest, f"localhost/enc:{kind}"))
    path = str(tmp_path / f"{kind}.tar")
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture
def ctx(tmp_path):
    from kiln.store import Store

    c = Context(
        store=Store.open(str(tmp_path / "root")),
        events=ListSink(),
        config=Config(tmpdir=str(tmp_path)),
    )
    yield c
    c.close()


def age_every_blob(store, seconds: float = 3600) -> None:
    """Put every blob past the GC grace period."""
    t = time.time() - seconds
    for digest in store.iter_blobs():
        os.utime(store.blob_path(digest), (t, t))


def saved_and_validated(ctx, name: str, tmp_path) -> None:
    out = str(tmp_path / (name.replace(":", "_").replace("/", "_") + ".out.tar"))
    archives.save(ctx, [name], out, format="oci-archive")
    with tarfile.open(out) as tar:
        assert "index.json" in tar.getnames()
    validate_image(open_store_image(ctx.store, name))


@pytest.mark.parametrize("second", ["none", "zstd"])
def test_same_layer_in_two_encodings_keeps_both_blobs(ctx, tmp_path, second) -> None:
    archives.load(ctx, archive_of("gzip", tmp_path))
    archives.load(ctx, archive_of(second, tmp_path))
    first = open_store_image(ctx.store, "localhost/enc:gzip")
    other = open_store_image(ctx.store, f"localhost/enc:{second}")
    assert first.record.layers == other.record.layers  # one chain ID...
    assert first.manifest.layers[0].digest != other.manifest.layers[0].digest  # ...two blobs

    age_every_blob(ctx.store)
    ctx.store.gc()

    assert ctx.store.has_blob(first.manifest.layers[0].digest)
    assert ctx.store.has_blob(other.manifest.layers[0].digest)
    for name in ("localhost/enc:gzip", f"localhost/enc:{second}"):
        saved_and_validated(ctx, name, tmp_path)
    assert ctx.store.fsck() == []


def test_removing_one_encoding_frees_only_its_blob(ctx, tmp_path) -> None:
    archives.load(ctx, archive_of("gzip", tmp_path))
    archives.load(ctx, archive_of("none", tmp_path))
    plain = open_store_image(ctx.store, "localhost/enc:none")
    gz = open_store_image(ctx.store, "localhost/enc:gzip")
    age_every_blob(ctx.store)

    ops.remove_images(ctx, ["localhost/enc:none"])
    ctx.store.gc()

    assert not ctx.store.has_blob(plain.manifest.layers[0].digest)
    assert ctx.store.has_blob(gz.manifest.layers[0].digest)
    saved_and_validated(ctx, "localhost/enc:gzip", tmp_path)


UNDO_V6 = (  # what schema V6 (kiln.store.lineage) added, V9's index in place of one, V10, V11
    "DROP INDEX images_parent_search; DROP INDEX images_parent_keys_missing; ALTER TABLE images DROP COLUMN parent_keys;"
    "CREATE INDEX images_lineage ON images(history_key, top_chain, added, id);"
    "DROP INDEX image_layers_blob_missing; DROP INDEX images_top_chain;"
    "DROP INDEX images_lineage; ALTER TABLE images DROP COLUMN top_chain;"
    "ALTER TABLE images DROP COLUMN layer_count; ALTER TABLE images DROP COLUMN history_key;"
)


def test_a_store_from_before_per_image_layer_blobs_is_migrated(tmp_path) -> None:
    """A schema-V2 store whose chain row was repointed to the second encoding: opening it
    records each image's own layer blob from its manifest, so GC keeps both."""
    import sqlite3

    from kiln.store import Store
    from kiln.store.schema import MIGRATIONS

    root = tmp_path / "root"
    c = Context(store=Store.open(str(root)), events=ListSink(), config=Config(tmpdir=str(tmp_path)))
    archives.load(c, archive_of("gzip", tmp_path))
    archives.load(c, archive_of("none", tmp_path))
    gz_blob = open_store_image(c.store, "localhost/enc:gzip").manifest.layers[0].digest
    plain_blob = open_store_image(c.store, "localhost/enc:none").manifest.layers[0].digest
    c.close()
    conn = sqlite3.connect(str(root / "kiln.db"), isolation_level=None)
    conn.executescript(
        UNDO_V6 + "ALTER TABLE image_layers DROP COLUMN blob_digest;"
        "ALTER TABLE containers DROP COLUMN snapshot_key;"
        "DROP TABLE released;"
        "DROP TABLE index_blobs; DROP TABLE index_names; DROP TABLE indexes;"  # V4
        "PRAGMA user_version = 2;"
    )
    conn.execute("UPDATE layers SET blob_digest=?", (str(plain_blob),))  # what V2 left
    conn.close()

    c = Context(store=Store.open(str(root)), events=ListSink(), config=Config(tmpdir=str(tmp_path)))
    try:
        assert c.store.schema_version == len(MIGRATIONS)
        assert c.store.resolve_image("localhost/enc:gzip").layer_blobs == [str(gz_blob)]
        age_every_blob(c.store)
        c.store.gc()
        assert c.store.has_blob(gz_blob) and c.store.has_blob(plain_blob)
        saved_and_validated(c, "localhost/enc:gzip", tmp_path)
    finally:
        c.close()
