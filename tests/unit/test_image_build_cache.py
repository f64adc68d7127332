"""The build cache artifact (kiln.image.build_cache): written to an OCI layout, read back
into another store byte for byte; every corruption is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import make_child  # noqa: E402
from kiln.errors import DigestMismatch, InvalidArgument  # noqa: E402
from kiln.image.build_cache import (  # noqa: E402
    CACHE_CONFIG_TYPE,
    decode_mapping,
    encode_mapping,
    export_cache,
    open_cache,
    read_layout_manifest,
)
from kiln.oci import media_types as mt  # noqa: E402
from kiln.store import Store  # noqa: E402
from kiln.store.oci_layout import OCILayout  # noqa: E402

pytest_plugins = ["fixtures_images"]


def _export(tmp_path, kiln_store, busybox_image):
    child = make_child(kiln_store, busybox_image)
    layout = OCILayout(str(tmp_path / "cache"), create=True)
    export_cache(layout, [("sha256:k-base", busybox_image), ("sha256:k-child", child)], ["v1"])
    return layout, child


def test_exported_cache_imports_the_same_images(tmp_path, kiln_store, busybox_image):
    layout, child = _export(tmp_path, kiln_store, busybox_image)
    raw, media_type = read_layout_manifest(layout, "v1")
    artifact = json.loads(raw)
    assert artifact["config"]["mediaType"] == CACHE_CONFIG_TYPE
    assert artifact["artifactType"] == "application/vnd.kiln.buildcache.v1"
    listed = {layer["digest"] for layer in artifact["layers"]}
    assert {str(d.digest) for d in child.layers} | {child.id} <= listed
    cache = open_cache(layout, raw, media_type, "test")
    assert set(cache.entries) == {"sha256:k-base", "sha256:k-child"}
    other = Store.open(str(tmp_path / "other"))
    try:
        image_id = cache.materialize("sha256:k-child", other)
        assert image_id == child.id
        assert other.get_image(image_id).manifest_digest == str(child.manifest_digest)
    finally:
        other.close()


def test_a_corrupt_layer_is_refused_on_the_hit(tmp_path, kiln_store, busybox_image):
    layout, child = _export(tmp_path, kiln_store, busybox_image)
    top = child.layers[-1].digest
    path = Path(layout.blob_path(top))
    data = path.read_bytes()
    path.write_bytes(data[:-4] + bytes(4))
    cache = open_cache(layout, *read_layout_manifest(layout, "v1"), "test")
    other = Store.open(str(tmp_path / "other"))
    try:
        with pytest.raises(DigestMismatch):
            cache.materialize("sha256:k-child", other)
        assert not other.has_blob(top)
    finally:
        other.close()


def test_mapping_entries_are_checked_against_their_digests(kiln_store, busybox_image):
    raw = encode_mapping([("sha256:k", busybox_image.manifest)])
    assert decode_mapping(raw, "t")["sha256:k"].raw == busybox_image.manifest.raw
    doc = json.loads(raw)
    entry = doc["entries"]["sha256:k"]
    entry["manifest"] = entry["manifest"].replace('"size":', '"size": ', 1)
    with pytest.raises(DigestMismatch, match="does not match its digest"):
        decode_mapping(json.dumps(doc).encode(), "t")
    with pytest.raises(InvalidArgument, match="not a kiln build cache"):
        decode_mapping(b'{"entries": {}}', "t")
    entry["mediaType"] = mt.OCI_INDEX
    with pytest.raises(InvalidArgument, match="not an image manifest"):
        decode_mapping(json.dumps(doc).encode(), "t")


def test_an_ordinary_image_is_not_a_cache(tmp_path, kiln_store, busybox_image):
    with pytest.raises(InvalidArgument, match="no kiln cache mapping"):
        open_cache(kiln_store, busybox_image.manifest.raw, busybox_image.manifest.media_type, "x")
    with pytest.raises(InvalidArgument, match="not a kiln build cache"):
        open_cache(kiln_store, b"{}", mt.OCI_INDEX, "x")


def test_writers_at_once_to_one_cache_directory_lose_no_name(tmp_path, kiln_store, busybox_image):
    """Builders exporting local caches to one directory under their own tags at the same
    time (CI jobs sharing a cache volume): index.json is read, changed and replaced by
    each, so without a lock one writer's name vanished under another's."""
    import threading

    layout, _ = _export(tmp_path, kiln_store, busybox_image)
    raw, media_type = read_layout_manifest(layout, "v1")
    start = threading.Barrier(6)

    def writer(n: int) -> None:
        mine = OCILayout(layout.path)  # each builder opens the directory itself
        start.wait()
        for i in range(15):
            mine.put_manifest(raw, media_type, [f"builder{n}-{i}"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads(Path(layout.path, "index.json").read_text())["manifests"]
    }
    assert names == {"v1"} | {f"builder{n}-{i}" for n in range(6) for i in range(15)}
