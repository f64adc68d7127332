"""``kiln diff``: A/C/D changes between two images' filesystems, or an image and its parent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.archive.changes import Change, changes_from_overlay_upper, diff_trees
from kiln.image.store_image import StoreImage, open_store_image
from kiln.image.unpack import unpack_image
from kiln.snapshot.mount import mounted
from kiln.store import Store

if TYPE_CHECKING:
    from kiln.snapshot.snapshotter import Snapshotter


def _against_parent(snaps: Snapshotter, top: str | None) -> list[Change]:
    if top is None:
        return []
    dirs = snaps.layer_dirs(top)  # top layer first
    return changes_from_overlay_upper(dirs[0], dirs[1:])


def _against_image(store: Store, snaps: Snapshotter, a: StoreImage, b: StoreImage) -> list[Change]:
    import secrets

    top_a = unpack_image(store, snaps, a)
    top_b = unpack_image(store, snaps, b)
    key_a = f"kiln-diff-{secrets.token_hex(8)}"
    key_b = f"kiln-diff-{secrets.token_hex(8)}"
    try:
        spec_a = snaps.view(key_a, top_a)
        spec_b = snaps.view(key_b, top_b)
        with mounted(spec_a) as root_a, mounted(spec_b) as root_b:
            return diff_trees(root_b, root_a)
    finally:
        for key in (key_a, key_b):
            try:
                snaps.remove(key)
            except Exception:  # noqa: BLE001 - best-effort cleanup of a view that may not exist
                pass


def image_diff(
    store: Store, snaps: Snapshotter, a: str, b: str | None = None
) -> list[tuple[str, str]]:
    """Changes that make image ``b`` (default: ``a``'s layers without the top one) into ``a``."""
    img_a = open_store_image(store, a)
    if b is None:
        changes = _against_parent(snaps, unpack_image(store, snaps, img_a))
    else:
        changes = _against_image(store, snaps, img_a, open_store_image(store, b))
    return [(c.kind, c.path) for c in changes]
