"""Unpack an image's layers into the snapshotter, each layer once, bottom up."""

from __future__ import annotations

from typing import Any

from kiln.image.model import Image, chain_ids
from kiln.store import Store


def unpack_image(store: Store, snaps: Any, img: Image) -> str | None:
    """Make sure every layer of ``img`` is an unpacked snapshot; returns the top chain id.

    Chain ids come from the config's diff_ids (OCI image-spec); a layer already
    unpacked (by this or any other image sharing it) is not touched. The
    snapshotter checks each layer's diff_id as it applies it and refuses a
    mismatch (DigestMismatch, nothing kept): this is where a pulled image's
    diff_ids are first verified, since a registry pull checks only blob digests
    and sizes, so an image whose layers do not match its config never gets a
    usable filesystem. ``None`` for an image without layers.
    """
    diff_ids = list(img.config.diff_ids)
    chains = chain_ids(diff_ids)
    parent: str | None = None
    for desc, diff_id, chain_id in zip(img.layers, diff_ids, chains, strict=True):
        if not snaps.has_layer(chain_id):
            snaps.unpack_layer(chain_id, parent, lambda d=desc: img.open_layer(d), diff_id)
        parent = chain_id
    return parent
