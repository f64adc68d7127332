"""``kiln image inspect``: the object ``podman image inspect`` prints (podman 4.x keys)."""

from __future__ import annotations

from typing import Any

from kiln.errors import KilnError
from kiln.image.store_image import StoreImage, open_store_image
from kiln.oci.reference import Reference
from kiln.store import Store


def _repo_digests(img: StoreImage) -> list[str]:
    out = list(img.record.repo_digests)
    for name in img.record.names:
        try:
            repo = Reference.parse(name).name
        except KilnError:
            continue
        value = f"{repo}@{img.record.manifest_digest}"
        if value not in out:
            out.append(value)
    return out


def inspect_store_image(
    store: Store, img: StoreImage, graph_driver: str = "overlay"
) -> dict[str, Any]:
    config = img.config
    rec = img.record
    # podman's Parent, by index (kiln.store.lineage), from the history already parsed
    parent = store.parent_of(rec.id, rec.layers, rec.config_digest or rec.id, config.history)
    out: dict[str, Any] = {
        "Id": rec.id.removeprefix("sha256:"),
        "Digest": rec.manifest_digest,
        "RepoTags": list(rec.names),
        "RepoDigests": _repo_digests(img),
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
            "Annotations": dict(img.manifest.annotations),
            "ManifestType": rec.manifest_media_type,
            "User": config.config.user,
            "History": [h.to_json() for h in config.history],
            "NamesHistory": list(rec.names),
        }
    )
    return out


def inspect_image(store: Store, name: str) -> dict[str, Any]:
    """The podman-shaped inspect object of the stored image ``name``."""
    return inspect_store_image(store, open_store_image(store, name))
