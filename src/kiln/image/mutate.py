"""The one place a new image's config and manifest are put together from a base image,
appended layers and a config: go-containerregistry's ``mutate.Append`` + ``ConfigFile``.

Pure (no store, no I/O): the base's layer descriptors are kept, their media types
spelled in the new format; the appended layers follow; ``rootfs.diff_ids`` is the
base's plus the new ones; the history is the config's plus each appended layer's
own entry; the config is serialised once and its descriptor and the manifest are
built from those bytes. The caller stores what comes back (``write_image``; a
working container's commit puts the same pieces together with its own history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kiln.errors import InvalidArgument
from kiln.image.model import Image
from kiln.oci import media_types as mt
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.util.choices import IMAGE_FORMATS, ImageFormat
from kiln.util.lazy_dataclass import dataclass

FORMATS = IMAGE_FORMATS


@dataclass(frozen=True)
class Addendum:
    """One layer to append: its blob's descriptor, its diff_id and its history entry
    (None: the config's history has it already)."""

    descriptor: Descriptor
    diff_id: str
    history: History | None = None


@dataclass(frozen=True)
class Mutated:
    """The new image's parts, ready to store: config bytes first, then the manifest."""

    manifest: Manifest
    config: ImageConfig
    config_raw: bytes

    @property
    def config_descriptor(self) -> Descriptor:
        return self.manifest.config


def check_format(image_format: str) -> ImageFormat:
    """``image_format`` as the canonical word (``kiln.util.choices``: one check, one wording)."""
    return ImageFormat.parse(image_format)


def append_layers(
    base: Image | None,
    layers: Sequence[Addendum],
    config: ImageConfig,
    image_format: str = "oci",
    *,
    annotations: Mapping[str, str] | None = None,
    check_history: bool = True,
) -> Mutated:
    """``base``'s layers + ``layers`` under ``config`` (its diff_ids and history are
    recomputed), in ``image_format``. ``check_history``: with any history at all, the
    count of non-empty entries must equal the layer count (InvalidArgument)."""
    image_format = check_format(image_format)
    descs: list[Descriptor] = []
    diff_ids: list[str] = []
    if base is not None:
        diff_ids += base.config.diff_ids
        for d in base.layers:
            media_type = mt.convert_layer_media_type(d.media_type, image_format)
            descs.append(d if media_type == d.media_type else d.replace(media_type=media_type))
    history = list(config.history)
    for layer in layers:
        descs.append(layer.descriptor)
        diff_ids.append(layer.diff_id)
        if layer.history is not None:
            history.append(layer.history)
    new_config = config.evolve(diff_ids=tuple(diff_ids), history=tuple(history))
    if check_history and history and len(new_config.non_empty_history()) != len(descs):
        raise InvalidArgument(
            f"the image would have {len(descs)} layers but "
            f"{len(new_config.non_empty_history())} non-empty history entries"
        )
    raw = new_config.to_bytes()
    config_desc = Descriptor(mt.config_type_for(image_format), Digest.of_bytes(raw), len(raw))
    notes = dict(annotations) if annotations and image_format == "oci" else None
    manifest = Manifest.build(mt.manifest_type_for(image_format), config_desc, descs, notes)
    return Mutated(manifest, new_config, raw)


__all__ = ["FORMATS", "Addendum", "Mutated", "append_layers", "check_format"]
