"""Commit one step and keep going on top of it, without copying or unpacking.

``Builder.commit`` writes the container's changes (the overlay upper) as a layer blob and
stores the image. For the next step the container must sit on that new image: instead of
unpacking the blob again (what buildah does with a fresh container per step), the upper
dir is adopted as the new layer's snapshot (``Snapshotter.commit``: a rename) and a new,
empty upper is prepared on top. The builder's state then says: base = the new image.
``Builder.commit_step`` and ``Builder.reset_to_image`` are the entry points.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiln.errors import NotFound
from kiln.store import ImageRecord
from kiln.util.atomic import fsync_tree

from .config_edit import ConfigEditor

if TYPE_CHECKING:
    from .builder import Builder


def commit_step(
    b: Builder,
    *,
    created_by: str,
    image_format: str,
    compression: str,
    timestamp: int | None,
    name: str | None = None,
    squash: bool = False,
    force_layer: bool = True,
) -> ImageRecord:
    """Commit ``b`` (its pending history, then ``created_by`` for this step) and rebase it;
    a step that changed nothing still gets its (empty) layer unless ``force_layer=False``."""
    old_chain = b.state.parent_chain_id
    # the upper was written without syncs (volatile overlay): durable before it becomes a
    # layer later builds trust (its blob is durable already: the store fsyncs blobs);
    # synced while the layer is tarred and stored, so the two waits for the disk overlap
    synced = None
    if b.volatile_mounts and not squash and not b.is_copy_snapshot():
        synced = _Background(fsync_tree, b.upper_dir())
    try:
        rec = b.commit(
            name,
            format=image_format,
            compression=compression,
            timestamp=timestamp,
            created_by=created_by,
            squash=squash,
            force_layer=force_layer,
        )
    finally:
        if synced is not None:
            synced.join()  # its error (if any) is raised below, before the adoption
    new_chain = rec.layers[-1] if rec.layers else None
    snaps = b.snapshots
    key = b.state.snapshot_key
    new_key = _next_key(b)
    if squash or new_chain == old_chain:
        # nothing adoptable (no new layer, or a squashed tree): start a fresh upper
        with contextlib.suppress(NotFound):
            snaps.remove(key)
        snaps.prepare(new_key, new_chain)
    else:
        if synced is not None:
            synced.result()
        # the snapshot goes on as new_key on the new layer, in the same directory
        snaps.commit(key, new_chain, old_chain, next_key=new_key)
    _point_at(b, rec, new_chain, new_key)
    return rec


def reset_to_image(b: Builder, image_id: str) -> None:
    """Point ``b`` at an existing image (a cache hit) with an empty upper."""
    from kiln.image import open_store_image, unpack_image

    img = open_store_image(b.store, image_id)
    chain = unpack_image(b.store, b.snapshots, img)
    with contextlib.suppress(NotFound):
        b.snapshots.remove(b.state.snapshot_key)
    _point_at(b, b.store.get_image(image_id), chain)


class _Background:
    """``fn(*args)`` on a thread of its own; ``result()`` re-raises what it raised."""

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # handed to result()
                self.error = exc

        self.thread = threading.Thread(target=run, name="kiln-fsync-tree", daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _next_key(b: Builder) -> str:
    return f"kiln-container-{b.id}-{secrets.token_hex(4)}"


def _point_at(
    b: Builder, rec: ImageRecord, chain: str | None, new_key: str | None = None, config=None
) -> None:
    """Make ``b`` a container of ``rec`` on snapshot ``new_key`` (prepared here if None)."""
    from kiln.image import open_store_image

    if new_key is None:
        new_key = _next_key(b)
        b.snapshots.prepare(new_key, chain)
    if config is None:
        config = open_store_image(b.store, rec.id).config
    b.state.snapshot_key = new_key
    b.state.parent_chain_id = chain
    b.state.image_id = rec.id
    b.state.history = []
    b.state.added = []
    b.state.created_by = ""
    b.config = ConfigEditor(config.evolve(), dict(b.config.annotations))
    b.save()
