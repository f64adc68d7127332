"""A destination that stores an image as a signed Docker schema 1 manifest
(``copy_image(img, Schema1Sink(RegistrySink(...), key), image_format="docker")``).

``copy_image`` hands it the layers (gzip: schema 1 knows no other compression, so the
caller asks for gzip where the stored layers differ) and then a schema 2 manifest; the
sink turns that into the schema 1 manifest of :mod:`kiln.oci.schema1_write` from the
image's config, pushes the gzipped empty layer when a history entry made no layer, signs
with ``key`` and stores the result through the inner destination. The config blob is
never sent: schema 1 carries the config inside the manifest.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from kiln.errors import InvalidArgument
from kiln.oci import media_types as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.oci.schema1_write import EMPTY_GZIP_LAYER, EMPTY_GZIP_LAYER_DIGEST, build, sign

if TYPE_CHECKING:
    from kiln.image.copy import ImageDestination


def check_schema1_layers(layers: Sequence[Descriptor]) -> None:
    """Refuse what schema 1 cannot carry: foreign (URL) layers."""
    for d in layers:
        if d.urls:
            raise InvalidArgument(
                f"layer {d.digest} is a foreign layer (its bytes live at a URL): Docker schema 1 "
                "cannot refer to it; push as v2s2 or oci"
            )


class Schema1Sink:
    """Wraps a destination (``has_blob``, ``put_blob``, ``put_manifest``)."""

    def __init__(
        self, inner: ImageDestination, key: object, config: ImageConfig, name: str, tag: str
    ):
        self.inner = inner
        self.key = key  # an ECDSA P-256 private key (cryptography's): sign() checks it
        self.config = config
        self.name = name
        self.tag = tag
        self.config_digest = Digest.of_bytes(config.to_bytes())
        self.manifest: bytes = b""

    def has_blob(self, digest: Digest) -> bool:
        return digest == self.config_digest or self.inner.has_blob(digest)

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        self.inner.put_blob(desc, stream)

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        manifest = Manifest.parse(raw, media_type)
        check_schema1_layers(manifest.layers)
        for d in manifest.layers:
            if mt.layer_compression(d.media_type) != "gzip":
                raise InvalidArgument(
                    f"layer {d.digest} is not gzip-compressed: Docker schema 1 carries gzip "
                    "layers only"
                )
        unsigned, uses_empty = build(self.config, manifest.layers, self.name, self.tag)
        if uses_empty and not self.inner.has_blob(EMPTY_GZIP_LAYER_DIGEST):
            desc = Descriptor(mt.DOCKER_LAYER_GZIP, EMPTY_GZIP_LAYER_DIGEST, len(EMPTY_GZIP_LAYER))
            self.inner.put_blob(desc, io.BytesIO(EMPTY_GZIP_LAYER))
        self.manifest = sign(unsigned, self.key)
        return self.inner.put_manifest(self.manifest, mt.DOCKER_SCHEMA1_SIGNED, names)


__all__ = ["Schema1Sink", "check_schema1_layers"]
