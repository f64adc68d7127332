"""The oracle: check every invariant of an image in a blob source.

``validate_image`` reads every byte once and raises InvalidArgument (or
DigestMismatch) naming the first broken invariant:

* the manifest blob matches its digest, parses, is schema 2;
* an index's children are validated in turn;
* the config blob matches digest and size and parses; os and architecture set;
* media types agree: a Docker manifest has a Docker config and Docker layers,
  an OCI manifest an OCI config and OCI layers;
* every layer blob matches digest and size, decompresses as its media type
  says, is a readable tar, and its uncompressed digest is the config's diff_id;
* there are as many diff_ids as layers, and (if the config has history) as
  many non-empty history entries as layers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kiln.archive.compression import CHUNK, Compression, open_decompressed
from kiln.archive.hashing import HashingReader
from kiln.archive.streams import ByteReader
from kiln.archive.tar_check import check_tar
from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image.model import Image, read_blob
from kiln.oci import media_types as mt
from kiln.oci.blobs import BlobSource
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.strict_json import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_DOCKER_LAYERS = {
    mt.DOCKER_LAYER,
    mt.DOCKER_LAYER_GZIP,
    mt.DOCKER_LAYER_ZSTD,
    mt.DOCKER_LAYER_FOREIGN,
}


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid image: {message}")


def validate_image(
    source: BlobSource | Image,
    manifest_digest: Digest | str | None = None,
    *,
    checked: Mapping[str, str] | None = None,
) -> None:
    """Check everything about the image (or index) ``manifest_digest`` in ``source``.

    ``source`` may also be an Image; then its own blobs and manifest are checked.
    ``checked``: layer blobs already checked as a layer is checked here (digest and size,
    compressed as their media type says, a tar ``check_tar`` takes), by blob digest, with
    the diff_id they were measured to have (``StoreDestination.put_unpacked``, a load's one
    pass): a layer whose config names that diff_id is not read again.
    """
    if manifest_digest is None:
        if not isinstance(source, Image):
            raise InvalidArgument("validate_image needs a manifest digest for a blob source")
        manifest_digest = source.manifest_digest
    blobs = source.blobs if isinstance(source, Image) else source
    if isinstance(manifest_digest, str):
        manifest_digest = Digest.parse(manifest_digest)
    _validate(blobs, Descriptor("", manifest_digest, -1), depth=0, checked=checked or {})


def _validate(source: BlobSource, desc: Descriptor, depth: int, checked: Mapping[str, str]) -> None:
    if depth > 2:
        raise _fail("manifest lists nest too deeply")
    raw = read_blob(source, desc.digest, MAX_MANIFEST_BYTES, "manifest")
    if desc.size >= 0 and len(raw) != desc.size:
        raise _fail(f"manifest {desc.digest} has {len(raw)} bytes, its descriptor says {desc.size}")
    media_type = sniff_media_type(raw, desc.media_type)
    if mt.is_index(media_type):
        index = Index.parse(raw, media_type)
        for child in index.manifests:
            _validate(source, child, depth + 1, checked)
        return
    if media_type in mt.SCHEMA1:
        raise _fail("Docker schema 1 manifests are not supported")
    manifest = Manifest.parse(raw, media_type)
    config = _check_config(source, manifest)
    _check_media_types(manifest)
    if len(config.diff_ids) != len(manifest.layers):
        raise _fail(
            f"the manifest has {len(manifest.layers)} layers but the config has "
            f"{len(config.diff_ids)} rootfs.diff_ids"
        )
    if config.history and len(config.non_empty_history()) != len(manifest.layers):
        raise _fail(
            f"the config history has {len(config.non_empty_history())} non-empty entries "
            f"for {len(manifest.layers)} layers"
        )
    for i, (layer, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=True)):
        if checked.get(str(layer.digest)) != diff_id:
            _check_layer(source, i, layer, diff_id)


def _check_config(source: BlobSource, manifest: Manifest) -> ImageConfig:
    desc = manifest.config
    try:
        raw = read_blob(source, desc, MAX_CONFIG_BYTES, "config")
    except DigestMismatch as exc:
        raise DigestMismatch(f"invalid image: {exc}", exc.expected, exc.actual) from None
    config = ImageConfig.parse(raw)
    if not config.os or not config.architecture:
        raise _fail(f"config {desc.digest} does not say its os and architecture")
    return config


def _check_media_types(manifest: Manifest) -> None:
    docker = manifest.media_type == mt.DOCKER_MANIFEST
    want_config = mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    if manifest.config.media_type != want_config:
        raise _fail(
            f"a {manifest.media_type} manifest must have a {want_config} config, "
            f"not {manifest.config.media_type}"
        )
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in mt.LAYERS:
            raise _fail(f"layer {i} has unknown media type {layer.media_type}")
        if (layer.media_type in _DOCKER_LAYERS) != docker:
            raise _fail(
                f"layer {i} has media type {layer.media_type} in a {manifest.media_type} manifest"
            )


class _CountingVerifier(io.RawIOBase):
    """Hashes and counts the compressed blob as the decompressor pulls it."""

    def __init__(self, inner: ByteReader):
        self._inner = HashingReader(inner)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        return self._inner.readinto(buf)

    @property
    def digest(self) -> str:
        return self._inner.digest

    @property
    def size(self) -> int:
        return self._inner.size


def _check_layer(source: BlobSource, i: int, desc: Descriptor, diff_id: str) -> None:
    if desc.urls and not source.has_blob(desc.digest):
        return  # foreign layer, not distributed with the image
    what = f"layer {i} ({desc.digest})"
    with source.open_blob(desc.digest) as raw:
        blob = _CountingVerifier(raw)
        try:
            diff, _size = check_layer_stream(blob, desc.media_type, what)
        except DigestMismatch:
            raise
        except InvalidArgument as exc:
            raise _fail(f"{what} cannot be read as {desc.media_type}: {exc}") from None
    if blob.size != desc.size:
        raise DigestMismatch(
            f"invalid image: {what} has {blob.size} bytes, the manifest says {desc.size}",
            str(desc.digest),
        )
    if blob.digest != str(desc.digest):
        raise DigestMismatch(
            f"invalid image: {what} does not match its digest (got {blob.digest})",
            str(desc.digest),
            blob.digest,
        )
    if diff != diff_id:
        raise DigestMismatch(
            f"invalid image: {what} unpacks to {diff} but the config's diff_id is {diff_id}",
            diff_id,
            diff,
        )


def check_layer_stream(blob: io.RawIOBase, media_type: str, what: str) -> tuple[str, int]:
    """Read layer blob ``blob`` to its end as a layer is checked here: decompressed as
    ``media_type`` says, a tar ``check_tar`` takes; returns its (diff_id, uncompressed
    size). InvalidArgument names the first problem. The one check of a layer's contents:
    validation reads a stored blob with it, and a store destination that unpacks nothing
    (an image of another platform) runs it beside the blob's ingest, so that validating
    the image does not read the layer a second time."""
    compression = Compression(mt.layer_compression(media_type))
    with open_decompressed(io.BufferedReader(blob, CHUNK), compression) as plain:
        tar_stream = HashingReader(plain)
        _walk_tar(tar_stream, what)
        tar_stream.drain()
        # the blob may carry bytes after the compressed stream ends
        while blob.readinto(bytearray(CHUNK)):
            pass
    return tar_stream.digest, tar_stream.size


def _walk_tar(stream: ByteReader, what: str) -> None:
    """Refuse here what unpacking would refuse later: a load never keeps an image
    that cannot be unpacked."""
    try:
        check_tar(stream)
    except InvalidArgument as exc:
        raise _fail(f"{what} is not a valid layer: {exc}") from None
