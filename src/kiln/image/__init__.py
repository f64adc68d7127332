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

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from kiln.util.exports import lazy_exports

if TYPE_CHECKING:
    from kiln.image.copy import CopyResult, ImageDestination, copy_image
    from kiln.image.import_tarball import import_tarball
    from kiln.image.model import Image, SourceImage, chain_ids, open_image, read_blob
    from kiln.image.store_image import (
        NewLayer,
        StoreDestination,
        StoreImage,
        open_held_image,
        open_store_image,
        register_image,
        write_image,
    )
    from kiln.image.unpack import unpack_image
    from kiln.image.validate import validate_image

# public name -> its module, imported on first use: the build's use of the store image
# needs neither copying between transports nor tarball import (nor its compressors) nor
# validation
_EXPORTS = {
    "CopyResult": "kiln.image.copy",
    "Image": "kiln.image.model",
    "ImageDestination": "kiln.image.copy",
    "NewLayer": "kiln.image.store_image",
    "SourceImage": "kiln.image.model",
    "StoreDestination": "kiln.image.store_image",
    "StoreImage": "kiln.image.store_image",
    "chain_ids": "kiln.image.model",
    "copy_image": "kiln.image.copy",
    "import_tarball": "kiln.image.import_tarball",
    "open_held_image": "kiln.image.store_image",
    "open_image": "kiln.image.model",
    "open_store_image": "kiln.image.store_image",
    "read_blob": "kiln.image.model",
    "register_image": "kiln.image.store_image",
    "unpack_image": "kiln.image.unpack",
    "validate_image": "kiln.image.validate",
    "write_image": "kiln.image.store_image",
}

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
    "open_held_image",
    "open_image",
    "open_store_image",
    "read_blob",
    "register_image",
    "unpack_image",
    "validate_image",
    "write_image",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _ImagePackage(types.ModuleType):
    """This package's module: ``import_tarball`` names both a function and the module it is
    in, and importing that module sets the package's attribute to the module; the function
    is kept instead (as when it was imported here eagerly)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "import_tarball" and isinstance(value, types.ModuleType):
            value = value.import_tarball
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ImagePackage
