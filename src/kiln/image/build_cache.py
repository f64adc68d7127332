"""The build cache as an OCI artifact, shared through a registry or an OCI layout.

A kiln build cache is an OCI image manifest whose config blob (media type
``CACHE_CONFIG_TYPE``) is the *mapping*: for each step's cache key (see
``kiln.build.cache_key``: parent key + instruction + inputs' digests, nothing of the
machine) the exact manifest of the image the step produced, as JSON text. The
manifest's ``layers`` list every blob those manifests name (layer blobs and image
configs), so the registry keeps them and a copy of the artifact carries them. Metadata
steps are covered too: their changes are in the config of the next image recorded.

Importing reads only the artifact's manifest and its mapping (verified against their
digests). When a step's key is found, :meth:`ImportedCache.materialize` copies that one
image into the store with ``copy_image`` — its config and only the layers the store
lacks, every blob checked against its digest — so the image (and its ID, manifest
digest and every later key that names it) is byte for byte the one the exporting
machine built.

Inline caches: an image pushed with ``INLINE_ANNOTATION`` on its manifest names a
mapping blob pushed beside it in the same repository; :func:`open_cache` reads either.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image.copy import ImageDestination, copy_image
from kiln.image.model import Image, SourceImage, read_blob
from kiln.oci import media_types as mt
from kiln.oci.blobs import BlobSink, BlobSource
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.oci.strict_json import MAX_MANIFEST_BYTES, canonical, loads_object
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.store import Store
    from kiln.store.oci_layout import OCILayout

__all__ = [
    "CACHE_ARTIFACT_TYPE",
    "CACHE_CONFIG_TYPE",
    "INLINE_ANNOTATION",
    "ImportedCache",
    "decode_mapping",
    "encode_mapping",
    "export_cache",
    "open_cache",
    "put_cache_blobs",
]

CACHE_CONFIG_TYPE = "application/vnd.kiln.buildcache.config.v1+json"
CACHE_ARTIFACT_TYPE = "application/vnd.kiln.buildcache.v1"
INLINE_ANNOTATION = "dev.kiln.buildcache.v1"  # value: the digest of the mapping blob
MAX_MAPPING_BYTES = 64 * 1024 * 1024
FORMAT = 1


def encode_mapping(entries: Sequence[tuple[str, Manifest]]) -> bytes:
    """The mapping blob: canonical JSON, entries sorted by key (the same build exports
    the same bytes)."""
    rows = {}
    for key, manifest in entries:
        rows[key] = {
            "mediaType": manifest.media_type,
            "digest": str(manifest.digest),
            "manifest": manifest.raw.decode("utf-8"),
        }
    return canonical({"kilnBuildCache": FORMAT, "entries": dict(sorted(rows.items()))})


def decode_mapping(raw: bytes, where: str) -> dict[str, Manifest]:
    """key -> image manifest; each manifest checked against the digest recorded with it."""
    obj = loads_object(raw, what=f"the build cache mapping of {where}", limit=MAX_MAPPING_BYTES)
    if obj.get("kilnBuildCache") != FORMAT or not isinstance(obj.get("entries"), dict):
        raise InvalidArgument(f"{where}: not a kiln build cache of format {FORMAT}")
    out: dict[str, Manifest] = {}
    for key, row in obj["entries"].items():
        if not isinstance(row, dict) or not all(
            isinstance(row.get(f), str) for f in ("mediaType", "digest", "manifest")
        ):
            raise InvalidArgument(f"{where}: cache entry {key} is malformed")
        if row["mediaType"] not in mt.MANIFESTS:
            raise InvalidArgument(f"{where}: cache entry {key} is not an image manifest")
        data = row["manifest"].encode("utf-8")
        want = Digest.parse(row["digest"])
        got = Digest.of_bytes(data, want.algorithm)
        if got != want:
            raise DigestMismatch(
                f"{where}: cache entry {key}'s manifest does not match its digest {want}",
                str(want),
                str(got),
            )
        out[key] = Manifest.parse(data, row["mediaType"])
    return out


# -- export -------------------------------------------------------------------------------


def _put(dest: BlobSink, source: BlobSource, desc: Descriptor) -> None:
    if dest.has_blob(desc.digest):
        return
    with source.open_blob(desc.digest) as f:
        dest.put_blob(desc, f)


def put_cache_blobs(
    dest: BlobSink, entries: Sequence[tuple[str, Image]], workers: int = 4
) -> tuple[Descriptor, list[Descriptor]]:
    """Put every entry's layers and config, then the mapping, into ``dest`` (a
    ``RegistrySink``, an ``OCILayout``: anything with has_blob/put_blob). Returns the
    mapping's descriptor and the descriptors of the blobs the entries need."""
    blobs: dict[Digest, Descriptor] = {}
    for _, img in entries:
        push_layers = getattr(dest, "push_layers", None)
        if push_layers is not None:  # the registry's: several at once, cross-checked
            push_layers(img, workers, config=True)
        else:
            for desc in [*img.layers, img.manifest.config]:
                _put(dest, img.blobs, desc)
        for desc in [*img.layers, img.manifest.config]:
            blobs.setdefault(desc.digest, Descriptor(desc.media_type, desc.digest, desc.size))
    mapping = encode_mapping([(key, img.manifest) for key, img in entries])
    mdesc = Descriptor(CACHE_CONFIG_TYPE, Digest.of_bytes(mapping), len(mapping))
    if not dest.has_blob(mdesc.digest):
        dest.put_blob(mdesc, io.BytesIO(mapping))
    return mdesc, list(blobs.values())


def export_cache(
    dest: ImageDestination,
    entries: Sequence[tuple[str, Image]],
    names: Sequence[str] = (),
    workers: int = 4,
) -> Descriptor:
    """Write the cache artifact into ``dest`` and its manifest last (``dest.put_manifest``:
    by the sink's tag for a registry, under ``names`` in an OCI layout)."""
    mdesc, blobs = put_cache_blobs(dest, entries, workers)
    manifest = Manifest.build(mt.OCI_MANIFEST, mdesc, blobs)
    obj = json.loads(manifest.raw)
    obj["artifactType"] = CACHE_ARTIFACT_TYPE
    raw = canonical(obj)
    return dest.put_manifest(raw, mt.OCI_MANIFEST, list(names))


# -- import -------------------------------------------------------------------------------


@dataclass
class ImportedCache:
    """The entries of one cache, and where their blobs are."""

    where: str
    blobs: BlobSource
    entries: dict[str, Manifest]

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def materialize(self, key: str, store: Store, tmp_dir: str | None = None) -> str:
        """Copy the image cached under ``key`` into ``store`` (layers it has are not
        fetched; every blob is verified); returns its image ID."""
        img = SourceImage(self.blobs, self.entries[key])
        res = copy_image(img, store, tmp_dir=tmp_dir)
        return res.image_id


def open_cache(blobs: BlobSource, raw: bytes, media_type: str, where: str) -> ImportedCache:
    """The cache a manifest names: a kiln cache artifact, or an image carrying an inline
    cache. ``raw`` must already be verified against its digest by the caller."""
    if media_type not in mt.MANIFESTS:
        raise InvalidArgument(
            f"{where}: not a kiln build cache (a {media_type or 'document'} of no kiln cache)"
        )
    manifest = Manifest.parse(raw, media_type)
    if manifest.config.media_type == CACHE_CONFIG_TYPE:
        desc: Descriptor | Digest = manifest.config
    elif INLINE_ANNOTATION in manifest.annotations:
        desc = Digest.parse(manifest.annotations[INLINE_ANNOTATION])
    else:
        raise InvalidArgument(f"{where}: not a kiln build cache (no kiln cache mapping in it)")
    data = read_blob(blobs, desc, MAX_MAPPING_BYTES, f"the build cache mapping of {where}")
    return ImportedCache(where, blobs, decode_mapping(data, where))


def read_layout_manifest(layout: OCILayout, tag: str) -> tuple[bytes, str]:
    """The manifest an OCI layout lists as ``tag`` (verified)."""
    desc = layout.resolve(tag)
    return read_blob(layout, desc, MAX_MANIFEST_BYTES, "manifest"), desc.media_type
