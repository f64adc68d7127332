"""One suite over every BlobSource / BlobSink: the store, an OCI layout directory,
an oci-archive (reader and writer) and a docker-archive (reader and writer)."""

from __future__ import annotations

import io

import pytest

from kiln.errors import DigestMismatch, NotFound  # noqa: E402
from kiln.image import copy_image, validate_image  # noqa: E402
from kiln.image.model import SourceImage, open_image  # noqa: E402
from kiln.oci import BlobSink, BlobSource, Descriptor, Digest  # noqa: E402
from kiln.oci import media_types as mt  # noqa: E402
from kiln.store import Store  # noqa: E402
from kiln.store.docker_archive import DockerArchive, DockerArchiveWriter  # noqa: E402
from kiln.store.oci_layout import OCIArchive, OCIArchiveWriter, OCILayout  # noqa: E402

pytest_plugins = ["fixtures_images"]

DATA = b"some blob bytes\n" * 100
DESC = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(DATA), len(DATA))


# --- sinks that can be read back (or re-opened as a source after commit) ---------------


class _Store:
    name = "store"

    def __init__(self, tmp):
        self.sink = self.store = Store.open(str(tmp / "root"))

    def source(self):
        return self.store


class _Layout:
    name = "oci-layout"

    def __init__(self, tmp):
        self.sink = OCILayout(str(tmp / "layout"), create=True)

    def source(self):
        return OCILayout(self.sink.path)


class _OCIArchive:
    name = "oci-archive"

    def __init__(self, tmp):
        self.path = str(tmp / "a.tar")
        self.sink = OCIArchiveWriter(self.path)

    def source(self):
        self.sink.commit()
        return OCIArchive(self.path)


class _DockerArchive:
    name = "docker-archive"

    def __init__(self, tmp):
        self.path = str(tmp / "d.tar")
        self.sink = DockerArchiveWriter(self.path)

    def source(self):
        self.sink.commit()
        return DockerArchive(self.path)


ALL = [_Store, _Layout, _OCIArchive, _DockerArchive]
BLOB_STORES = [_Store, _Layout, _OCIArchive]  # hold arbitrary blobs (docker-archive: images only)


@pytest.fixture(params=ALL, ids=lambda c: c.name)
def transport(request, tmp_path):
    return request.param(tmp_path)


@pytest.fixture(params=BLOB_STORES, ids=lambda c: c.name)
def blob_transport(request, tmp_path):
    return request.param(tmp_path)


def test_protocols(transport):
    assert isinstance(transport.sink, BlobSink)


def test_put_then_read(blob_transport):
    sink = blob_transport.sink
    assert not sink.has_blob(DESC.digest)
    sink.put_blob(DESC, io.BytesIO(DATA))
    assert sink.has_blob(DESC.digest)
    sink.put_blob(DESC, io.BytesIO(DATA))  # idempotent
    src = blob_transport.source()
    assert isinstance(src, BlobSource)
    assert src.has_blob(DESC.digest)
    with src.open_blob(DESC.digest) as f:
        assert f.read() == DATA


def test_wrong_digest_keeps_nothing(blob_transport):
    sink = blob_transport.sink
    bad = DESC.replace(digest=Digest.of_bytes(b"other"))
    with pytest.raises(DigestMismatch):
        sink.put_blob(bad, io.BytesIO(DATA))
    assert not sink.has_blob(bad.digest)
    sink.put_blob(DESC, io.BytesIO(DATA))  # a later good blob still works
    assert blob_transport.source().has_blob(DESC.digest)
    assert not blob_transport.source().has_blob(bad.digest)


def test_wrong_size_keeps_nothing(blob_transport):
    sink = blob_transport.sink
    with pytest.raises(DigestMismatch):
        sink.put_blob(DESC.replace(size=len(DATA) + 1), io.BytesIO(DATA))
    with pytest.raises(DigestMismatch):
        sink.put_blob(DESC.replace(size=len(DATA) - 1), io.BytesIO(DATA))
    assert not sink.has_blob(DESC.digest)


def test_unknown_blob_is_not_found(transport):
    unknown = Digest.of_bytes(b"never stored")
    if transport.name == "docker-archive":
        pytest.skip("an empty docker-archive is not readable (no manifest.json images)")
    src = transport.source()
    assert not src.has_blob(unknown)
    with pytest.raises(NotFound):
        src.open_blob(unknown)


def _image_from(t, result) -> SourceImage:
    src = t.source()
    if t.name == "docker-archive":
        entry = src.resolve("busybox:latest")
        return SourceImage(src, entry.manifest)
    if t.name == "store":
        from kiln.image import open_store_image

        return open_store_image(src, "busybox:latest")
    return open_image(src, src.resolve("busybox:latest"))


def test_image_copy_round_trip(transport, busybox_image):
    """Any source meets any sink: busybox from the store into the transport and back."""
    result = copy_image(busybox_image, transport.sink, ["busybox:latest"])
    img = _image_from(transport, result)
    validate_image(img)
    assert img.id == busybox_image.id
    assert img.config.diff_ids == busybox_image.config.diff_ids
    if transport.name != "docker-archive":
        assert img.manifest_digest == busybox_image.manifest_digest


@pytest.mark.parametrize("dst_cls", ALL, ids=lambda c: c.name)
def test_any_source_to_any_sink(transport, dst_cls, busybox_image, tmp_path):
    copy_image(busybox_image, transport.sink, ["busybox:latest"])
    src_img = _image_from(transport, None)
    (tmp_path / "dst").mkdir()
    dst = dst_cls(tmp_path / "dst")
    copy_image(src_img, dst.sink, ["busybox:latest"])
    out = _image_from(dst, None)
    validate_image(out)
    assert out.id == busybox_image.id
