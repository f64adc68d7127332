"""Image manifests and indexes that keep their exact bytes.

A digest is always of the bytes as stored; parsing never re-serialises.
Docker v2 schema 1 manifests are read by :mod:`kiln.oci.schema1` and written only for
``push --format v2s1`` by :mod:`kiln.oci.schema1_write`.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.platform import Platform
from kiln.oci.strict_json import MAX_MANIFEST_BYTES, canonical, expect, loads_object
from kiln.util.lazy_dataclass import dataclass


def sniff_media_type(raw: bytes, declared: str = "") -> str:
    """The media type of a manifest document: the declared one, its field, or its shape."""
    return _media_type_of(loads_object(raw, what="manifest", limit=MAX_MANIFEST_BYTES), declared)


def _media_type_of(obj: dict[str, Any], declared: str) -> str:
    """:func:`sniff_media_type` of a document already parsed."""
    if "manifests" in obj and ("layers" in obj or "config" in obj):
        # one document that reads as an index to one client and an image to another
        # (CVE-2021-41190): the image spec forbids it, so no reader may guess
        raise InvalidArgument("manifest has both manifests and layers/config: ambiguous, refused")
    field_type = obj.get("mediaType", "")
    if not isinstance(field_type, str):
        raise InvalidArgument("manifest mediaType must be a string")
    if declared and declared not in ("application/json", "text/plain"):
        if field_type and field_type != declared:
            raise InvalidArgument(
                f"manifest declares media type {field_type} but was served as {declared}"
            )
        return declared
    if field_type:
        return field_type
    if obj.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_SCHEMA1
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj:
        return mt.OCI_MANIFEST
    raise InvalidArgument("cannot tell what kind of manifest this is")


@dataclass(frozen=True)
class Manifest:
    """An image manifest, with the bytes it was read from."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    subject: Descriptor | None = None

    @classmethod
    def parse(cls, raw: bytes, media_type: str = "") -> Manifest:
        obj = loads_object(raw, what="manifest")  # once: the media type is sniffed from it
        media_type = _media_type_of(obj, media_type)
        if media_type not in mt.MANIFESTS:
            raise InvalidArgument(f"not an image manifest: {media_type}")
        if obj.get("schemaVersion") != 2:
            raise InvalidArgument("manifest schemaVersion must be 2")
        layers = expect(obj.get("layers"), list, "manifest.layers")
        if layers is None:
            raise InvalidArgument("manifest has no layers list")
        subject = obj.get("subject")
        return cls(
            raw=raw,
            media_type=media_type,
            config=Descriptor.from_json(obj.get("config"), "manifest.config"),
            layers=tuple(
                Descriptor.from_json(layer, f"manifest.layers[{i}]")
                for i, layer in enumerate(layers)
            ),
            annotations=dict(expect(obj.get("annotations") or {}, dict, "manifest.annotations")),
            subject=Descriptor.from_json(subject, "manifest.subject") if subject else None,
        )

    @classmethod
    def build(
        cls,
        media_type: str,
        config: Descriptor,
        layers: list[Descriptor],
        annotations: dict[str, str] | None = None,
    ) -> Manifest:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config.to_json(),
        }
        obj["layers"] = [layer.to_json() for layer in layers]
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(canonical(obj), media_type, config, tuple(layers), dict(annotations or {}))

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), platform=platform)

    @property
    def is_docker(self) -> bool:
        return self.media_type == mt.DOCKER_MANIFEST


@dataclass(frozen=True)
class Index:
    """An image index (manifest list), with the bytes it was read from."""

    raw: bytes
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(cls, raw: bytes, media_type: str = "") -> Index:
        obj = loads_object(raw, what="index")  # once: the media type is sniffed from it
        media_type = _media_type_of(obj, media_type)
        if media_type not in mt.INDEXES:
            raise InvalidArgument(f"not an image index: {media_type}")
        manifests = expect(obj.get("manifests"), list, "index.manifests")
        if manifests is None:
            raise InvalidArgument("index has no manifests list")
        return cls(
            raw=raw,
            media_type=media_type,
            manifests=tuple(
                Descriptor.from_json(m, f"index.manifests[{i}]") for i, m in enumerate(manifests)
            ),
            annotations=dict(expect(obj.get("annotations") or {}, dict, "index.annotations")),
        )

    @classmethod
    def build(
        cls, media_type: str, manifests: list[Descriptor], annotations: dict[str, str] | None = None
    ) -> Index:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [m.to_json() for m in manifests],
        }
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls(canonical(obj), media_type, tuple(manifests), dict(annotations or {}))

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)

    def select(self, want: Platform) -> Descriptor:
        """The first child for ``want`` (an exact variant first); ``NotFound`` if none."""
        candidates = [
            m for m in self.manifests if m.platform is not None and want.matches(m.platform)
        ]
        exact = [m for m in candidates if m.platform and m.platform.variant == want.variant]
        chosen = (exact or candidates)[:1]
        if not chosen and self.media_type == mt.OCI_INDEX:
            # an OCI entry may leave its platform out: the first such is taken when none
            # matches, as containers/image (podman, buildah) takes it; Docker's need one
            chosen = [m for m in self.manifests if m.platform is None][:1]
        if not chosen:
            offered = ", ".join(str(m.platform) for m in self.manifests if m.platform) or "none"
            raise NotFound(f"no image for platform {want} in the manifest list (it has: {offered})")
        return chosen[0]
