"""Image/Layer/Index model over any blob source; copy between sources and sinks;
transports (``kiln.image.transports``: one module per file transport, found by name;
the registry's source and sink); unpack; validate. Must not import container,
build, ops, cli, api.

The core: :class:`Image` (manifest, config, layers, open_layer) is derived by
:class:`SourceImage` from any blob source and a manifest; the store, OCI
layouts and docker-archives are all such sources, and all of them (plus
registries) are destinations for :func:`copy_image`. :func:`validate_image`
checks every invariant.
"""

from kiln.image.copy import CopyResult, ImageDestination, copy_image
from kiln.image.import_tarball import import_tarball
from kiln.image.model import Image, SourceImage, chain_ids, open_image, read_blob
from kiln.image.store_image import (
    NewLayer,
    StoreDestination,
    StoreImage,
    open_store_image,
    register_image,
    write_image,
)
from kiln.image.unpack import unpack_image
from kiln.image.validate import validate_image

__all__ = [
    "CopyResult",
    "Image",
    "ImageDestination",
    "NewLayer",
    "SourceImage",
    "StoreDestination",
    "StoreImage",
    "chain_ids",
    "copy_image",
    "import_tarball",
    "open_image",
    "open_store_image",
    "read_blob",
    "register_image",
    "unpack_image",
    "validate_image",
    "write_image",
]
