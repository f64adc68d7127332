"""``kiln image inspect``: the object ``podman image inspect`` prints (podman 4.x keys).

``kiln serve`` answers every ``docker image inspect`` with it, so it reads no more than
it shows: the image's row (one statement), its config (parsed, verified against the
ID) and its manifest's annotations (the manifest is not parsed into layers), and finds
the parent by index (``kiln.store.lineage``).
"""

from __future__ import annotations

from typing import Any

from kiln.errors import DigestMismatch, NotFound
from kiln.image.store_image import StoreImage
from kiln.oci import Digest
from kiln.oci.config import ImageConfig
from kiln.oci.strict_json import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, expect, loads_object
from kiln.store import ImageRecord, Store


def inspect_store_image(
    store: Store, img: StoreImage, graph_driver: str = "overlay"
) -> dict[str, Any]:
    """The inspect object of an image already opened (its manifest parsed)."""
    return inspect_record(store, img.record, img.config, img.manifest.annotations, graph_driver)


def inspect_record(
    store: Store,
    rec: ImageRecord,
    config: ImageConfig,
    annotations: dict[str, str],
    graph_driver: str = "overlay",
) -> dict[str, Any]:
    """The inspect object of the image ``rec`` with this config and manifest annotations."""
    # podman's Parent, by index (kiln.store.lineage), from the history already parsed
    parent = store.parent_of(rec.id, rec.layers, rec.config_digest or rec.id, config.history)
    out: dict[str, Any] = {
        "Id": rec.id.removeprefix("sha256:"),
        "Digest": rec.manifest_digest,
        "RepoTags": list(rec.names),
        # each repository with the digest it was pulled or pushed as there (docker's): a name
        # never pulled or pushed is not paired with some other digest of the image
        "RepoDigests": list(rec.repo_digests),
        "Parent": parent.removeprefix("sha256:") if parent else "",
        "Comment": config.extra.get("comment", "") or "",
        "Created": config.created,
        "Config": config.config.to_json(),
        "Version": config.extra.get("docker_version", "") or "",
        "Author": config.author,
        "Architecture": config.architecture,
        "Os": config.os,
    }
    if config.variant:
        out["Variant"] = config.variant
    out.update(
        {
            "Size": rec.size,
            "VirtualSize": rec.size,
            "GraphDriver": {"Name": graph_driver, "Data": None},
            "RootFS": {"Type": "layers", "Layers": list(config.diff_ids)},
            "Labels": dict(config.config.labels) or None,
            "Annotations": dict(annotations),
            "ManifestType": rec.manifest_media_type,
            "User": config.config.user,
            "History": [h.to_json() for h in config.history],
            "NamesHistory": list(rec.names),
        }
    )
    return out


def inspect_image(store: Store, name: str, container_config: bool = False) -> dict[str, Any]:
    """The podman-shaped inspect object of the stored image ``name``; with
    ``container_config``, also the config's ``container`` and ``container_config`` (as
    ``Container`` and ``ContainerConfig``: Docker's inspect shows them before API 1.45)."""
    rec = store.resolve_image(name)
    config = ImageConfig.parse(
        _verified(
            store, Digest.parse(rec.config_digest or rec.id), MAX_CONFIG_BYTES, "image config"
        )
    )
    manifest = _verified(store, Digest.parse(rec.manifest_digest), MAX_MANIFEST_BYTES, "manifest")
    out = inspect_record(store, rec, config, _annotations(manifest))
    if container_config:
        container, settings = config.extra.get("container"), config.extra.get("container_config")
        out["Container"] = container if isinstance(container, str) else ""
        out["ContainerConfig"] = settings if isinstance(settings, dict) else {}
    return out


def _verified(store: Store, digest: Digest, limit: int, what: str) -> bytes:
    """A small blob of the image, read whole and checked against its digest."""
    raw = _blob(store, digest, limit, what)
    got = Digest.of_bytes(raw, digest.algorithm)
    if got != digest:
        raise DigestMismatch(
            f"{what} does not match its digest {digest} (got {got}); the source is corrupt",
            str(digest),
            str(got),
        )
    return raw


def _annotations(manifest: bytes) -> dict[str, str]:
    """The manifest's annotations. Most manifests have none: a document whose bytes never
    spell the key (nor any ``\\u`` escape, which could spell it) has none, and is not
    parsed (it was checked against its digest, and parsed strictly when it was stored)."""
    if b"annotations" not in manifest and b"\\u" not in manifest:
        return {}
    parsed = loads_object(manifest, what="manifest")
    return dict(expect(parsed.get("annotations") or {}, dict, "manifest.annotations"))


def _blob(store: Store, digest: Digest, limit: int, what: str) -> bytes:
    try:
        return store.blob_bytes(digest, limit, what)
    except NotFound:
        raise NotFound(
            f"the store has lost blob {digest}; run `kiln system check` or pull the image again"
        ) from None
