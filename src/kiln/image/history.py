"""Image history rows joined with layer sizes, as ``podman history`` shows them."""

from __future__ import annotations

from dataclasses import field

from kiln.errors import KilnError
from kiln.image.store_image import StoreImage, open_store_image
from kiln.store import ImageRecord, Store
from kiln.util.lazy_dataclass import dataclass


@dataclass(frozen=True)
class HistoryRow:
    id: str  # the image ID on the row that made an image ("sha256:..."), else "<missing>"
    created: str
    created_by: str
    size: int  # uncompressed size of the layer the row made; 0 for empty layers
    comment: str
    tags: list[str] = field(default_factory=list)
    empty_layer: bool = False


def _images_by_top(store: Store) -> dict[tuple[str, ...], list[ImageRecord]]:
    out: dict[tuple[str, ...], list[ImageRecord]] = {}
    for rec in store.list_images():
        out.setdefault(tuple(rec.layers), []).append(rec)
    return out


def history_rows(store: Store, img: StoreImage) -> list[HistoryRow]:
    """Rows newest first. A row gets an image ID when a stored image is this image's
    ancestor ending exactly there: the same layers and the same history up to that row
    (a build carries its parent's history verbatim), as podman shows local parents. An
    unrelated image that merely shares the layers and the history length is not one."""
    config = img.config
    chains = list(img.record.layers)
    by_layers = _images_by_top(store)
    rows: list[HistoryRow] = []
    layer_index = 0
    entries = list(config.history)
    for n, entry in enumerate(entries):
        size = 0
        if not entry.empty_layer and layer_index < len(chains):
            try:
                size = store.get_layer(chains[layer_index]).uncompressed_size
            except KilnError:
                size = 0
            layer_index += 1
        row_id, tags = "<missing>", []
        if n == len(entries) - 1:
            row_id, tags = img.id, list(img.record.names)
        else:
            for rec in by_layers.get(tuple(chains[:layer_index]), []):
                if rec.id == img.id:
                    continue
                try:
                    other = open_store_image(store, rec.id)
                    if tuple(other.config.history) == tuple(entries[: n + 1]):
                        row_id, tags = rec.id, list(rec.names)
                        break
                except KilnError:
                    continue
        rows.append(
            HistoryRow(
                row_id,
                entry.created,
                entry.created_by,
                size,
                entry.comment,
                tags,
                entry.empty_layer,
            )
        )
    if not entries:  # no history recorded: one row per layer
        for i, chain in enumerate(chains):
            rows.append(
                HistoryRow(
                    img.id if i == len(chains) - 1 else "<missing>",
                    config.created,
                    "",
                    store.get_layer(chain).uncompressed_size,
                    "",
                    list(img.record.names) if i == len(chains) - 1 else [],
                )
            )
    rows.reverse()
    return rows


def image_history(store: Store, name: str) -> list[HistoryRow]:
    """``kiln history NAME``: the image's history, newest first."""
    return history_rows(store, open_store_image(store, name))
