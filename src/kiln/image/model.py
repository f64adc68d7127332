"""The Image model: a full image derived from a tiny core (a blob source + a manifest).

Any transport that can serve blobs by digest — the store, an OCI layout, an
archive, a registry — becomes an :class:`Image` through :class:`SourceImage`;
everything else (config, layers, diff_ids, chain ids) is derived, once.
"""

from __future__ import annotations

import io
import os
from functools import cached_property
from typing import BinaryIO, Protocol, runtime_checkable

from kiln.errors import DigestMismatch, InvalidArgument, NotFound
from kiln.oci import media_types as mt
from kiln.oci.blobs import BlobSource
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.platform import Platform
from kiln.oci.strict_json import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES


@runtime_checkable
class Image(Protocol):
    """What every image offers, whatever holds its bytes."""

    @property
    def blobs(self) -> BlobSource: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def manifest_digest(self) -> Digest: ...

    @property
    def config(self) -> ImageConfig: ...

    @property
    def layers(self) -> list[Descriptor]: ...

    def open_layer(self, desc: Descriptor) -> BinaryIO: ...


def read_blob(source: BlobSource, desc: Descriptor | Digest, limit: int, what: str) -> bytes:
    """A small blob read whole and checked against its digest (and size, given a descriptor)."""
    digest = desc.digest if isinstance(desc, Descriptor) else desc
    with source.open_blob(digest) as f:
        data = _read_at_most(f, limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{what} {digest} is over the {limit}-byte limit")
    got = Digest.of_bytes(data, digest.algorithm)
    if got != digest:
        raise DigestMismatch(
            f"{what} does not match its digest {digest} (got {got}); the source is corrupt",
            str(digest),
            str(got),
        )
    if isinstance(desc, Descriptor) and len(data) != desc.size:
        raise DigestMismatch(
            f"{what} {digest} has {len(data)} bytes but its descriptor says {desc.size}",
            str(digest),
            str(got),
        )
    return data


#: what one read asks for: a buffered ``read(n)`` allocates ``n`` bytes before it reads, and
#: configs and manifests are a few KiB where their limits are MiBs
_READ_CHUNK = 64 * 1024


def _read_at_most(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes of ``f``: a file of known size in one read of its size (and one byte
    more, which says whether it grew), anything else in chunks; never a buffer of ``n``
    for a small blob."""
    try:
        size = os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # no descriptor: an HTTP body, bytes
        size = 0
    if 0 < size < n:
        data = f.read(size + 1)
        if len(data) <= size:
            return data
        return data + _read_at_most(f, n - len(data))
    chunks: list[bytes] = []
    left = n
    while left > 0:
        chunk = f.read(min(_READ_CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def chain_ids(diff_ids: list[str] | tuple[str, ...]) -> list[str]:
    """OCI chain ids: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(str(Digest.of_bytes(f"{out[-1]} {diff_id}".encode())))
    return out


def platform_string(config: ImageConfig) -> str:
    parts = [config.os or "linux", config.architecture]
    if config.variant:
        parts.append(config.variant)
    return "/".join(parts)


class SourceImage:
    """An image over any blob source; config and derived values are computed once."""

    def __init__(self, blobs: BlobSource, manifest: Manifest, names: tuple[str, ...] = ()):
        self._blobs = blobs
        self._manifest = manifest
        self.names = tuple(names)

    @property
    def blobs(self) -> BlobSource:
        return self._blobs

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest_digest(self) -> Digest:
        return self._manifest.digest

    @cached_property
    def config(self) -> ImageConfig:
        raw = read_blob(self._blobs, self._manifest.config, MAX_CONFIG_BYTES, "image config")
        return ImageConfig.parse(raw)

    @property
    def config_digest(self) -> Digest:
        return self._manifest.config.digest

    @property
    def id(self) -> str:
        """The image ID: the config digest, as Docker and podman use it."""
        return str(self._manifest.config.digest)

    @property
    def layers(self) -> list[Descriptor]:
        return list(self._manifest.layers)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.diff_ids)

    @cached_property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.config.diff_ids)

    def open_layer(self, desc: Descriptor) -> BinaryIO:
        return self._blobs.open_blob(desc.digest)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id[:19]} manifest {self.manifest_digest}>"


def open_image(
    blobs: BlobSource,
    desc: Descriptor | Digest,
    platform: Platform | None = None,
    names: tuple[str, ...] = (),
) -> SourceImage:
    """The image a manifest (or index: the entry for ``platform``, default the host's) names."""
    raw = read_blob(blobs, desc, MAX_MANIFEST_BYTES, "manifest")
    declared = desc.media_type if isinstance(desc, Descriptor) else ""
    media_type = sniff_media_type(raw, declared)
    for _ in range(4):
        if not mt.is_index(media_type):
            break
        index = Index.parse(raw, media_type)
        child = index.select(platform or Platform.host())
        raw = read_blob(blobs, child, MAX_MANIFEST_BYTES, "manifest")
        media_type = sniff_media_type(raw, child.media_type)
    if mt.is_index(media_type):
        raise InvalidArgument("manifest lists nest too deeply (more than 4 levels); not an image")
    if media_type in mt.SCHEMA1:
        raise InvalidArgument("Docker v2 schema 1 images cannot be read from this source")
    return SourceImage(blobs, Manifest.parse(raw, media_type), names)


def bytes_source(blobs: dict[Digest, bytes], fallback: BlobSource | None = None) -> BlobSource:
    """A blob source serving ``blobs`` from memory, then ``fallback``."""
    return _BytesSource(blobs, fallback)


class _BytesSource:
    def __init__(self, blobs: dict[Digest, bytes], fallback: BlobSource | None):
        self._blobs = blobs
        self._fallback = fallback

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._blobs or bool(self._fallback and self._fallback.has_blob(digest))

    def open_blob(self, digest: Digest) -> BinaryIO:
        if digest in self._blobs:
            return io.BytesIO(self._blobs[digest])
        if self._fallback is None:
            raise NotFound(f"blob {digest} not found")
        return self._fallback.open_blob(digest)
