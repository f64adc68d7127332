"""Unpack an image's layers into the snapshotter, each layer once, bottom up."""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, BinaryIO

from kiln.errors import InvalidArgument
from kiln.image.model import Image, chain_ids
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.manifest import Manifest
from kiln.store import Store

if TYPE_CHECKING:
    from kiln.snapshot.snapshotter import Snapshotter
    from kiln.snapshot.staged import StagedLayer


def unpack_image(store: Store, snaps: Snapshotter, img: Image) -> str | None:
    """Make sure every layer of ``img`` is an unpacked snapshot; returns the top chain id.

    Chain ids come from the config's diff_ids (OCI image-spec); a layer already
    unpacked (by this or any other image sharing it) is not touched. The
    snapshotter checks each layer's diff_id as it applies it and refuses a
    mismatch (DigestMismatch, nothing kept): this is where a loaded image's
    diff_ids are first verified, so an image whose layers do not match its config
    never gets a usable filesystem. ``None`` for an image without layers.
    """
    return unpack_layers(snaps, list(img.layers), list(img.config.diff_ids), img.open_layer)


def unpack_layers(
    snaps: Snapshotter,
    layers: Sequence[Descriptor],
    diff_ids: Sequence[str],
    open_layer: Callable[[Descriptor], BinaryIO],
    staged: MutableMapping[str, StagedLayer] | None = None,
) -> str | None:
    """``unpack_image`` from its parts. ``staged``: layers a pull already unpacked in
    ``tmp/`` while they arrived, by blob digest (each is taken out of the mapping when
    used). They are recorded together once the config's diff_ids vouch for them
    (``Snapshotter.adopt_staged``); a layer not staged is unpacked from ``open_layer``."""
    if len(layers) != len(diff_ids):
        raise InvalidArgument(
            f"the image has {len(layers)} layers but its config names {len(diff_ids)} diff_ids"
        )
    staged = staged if staged is not None else {}
    pending: list[tuple[StagedLayer, str, str | None, str]] = []
    parent: str | None = None
    try:
        for desc, diff_id, chain_id in zip(
            layers, diff_ids, chain_ids(list(diff_ids)), strict=True
        ):
            # read, and taken out of ``staged`` only once it is in ``pending`` or discarded:
            # a Ctrl-C just after a pop would leave its tree in ``tmp/``, nobody's
            ready = staged.get(str(desc.digest))
            if snaps.has_layer(chain_id):
                if ready is not None:
                    ready.discard()
            elif ready is not None:
                pending.append((ready, chain_id, parent, str(diff_id)))
            else:
                _adopt(snaps, pending)
                snaps.unpack_layer(chain_id, parent, functools.partial(open_layer, desc), diff_id)
            staged.pop(str(desc.digest), None)
            parent = chain_id
        _adopt(snaps, pending)
    finally:  # what was not adopted goes (a mismatch, a failure below it)
        for item in pending:
            item[0].discard()
    return parent


def unpack_stored(
    store: Store,
    snaps: Snapshotter,
    manifest: Manifest,
    config: ImageConfig,
    staged: MutableMapping[str, StagedLayer],
) -> str | None:
    """``unpack_layers`` at the end of a pull or copy into ``store``, when every blob of
    ``manifest`` is in: the ``staged`` trees are recorded once ``config``'s diff_ids vouch
    for them, any other layer is unpacked from its stored blob."""
    return unpack_layers(
        snaps, manifest.layers, config.diff_ids, lambda d: store.open_blob(d.digest), staged
    )


def _adopt(snaps: Snapshotter, pending: list[tuple[StagedLayer, str, str | None, str]]) -> None:
    if pending:
        snaps.adopt_staged(pending)
        pending.clear()
