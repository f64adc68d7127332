"""Which images share which layers: ``kiln image tree`` (as ``podman image tree``)."""

from __future__ import annotations

from kiln.image.store_image import open_store_image
from kiln.store import ImageRecord, Store

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float, precision: int = 4) -> str:
    """Decimal units with ``precision`` significant digits, as podman prints sizes."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{_UNITS[i]}"


def layer_users(store: Store) -> dict[str, list[ImageRecord]]:
    """Chain id -> the images that use it (anywhere in their chain)."""
    out: dict[str, list[ImageRecord]] = {}
    for rec in store.list_images():
        for chain in rec.layers:
            out.setdefault(chain, []).append(rec)
    return out


def top_layer_of(store: Store) -> dict[str, list[ImageRecord]]:
    """Chain id -> the images whose top layer it is."""
    out: dict[str, list[ImageRecord]] = {}
    for rec in store.list_images():
        if rec.layers:
            out.setdefault(rec.layers[-1], []).append(rec)
    return out


def _names(recs: list[ImageRecord]) -> str:
    # an image without names is left out, as podman's tree does
    names = [n for r in recs for n in r.names]
    return "[" + " ".join(names) + "]"


def _header(rec: ImageRecord) -> list[str]:
    return [
        f"Image ID: {rec.id.removeprefix('sha256:')[:12]}",
        f"Tags:     [{' '.join(rec.names)}]",
        f"Size:     {human_size(rec.size)}",
    ]


def _layer_line(store: Store, chain: str, tops: dict[str, list[ImageRecord]]) -> str:
    size = store.get_layer(chain).uncompressed_size
    line = f"ID: {chain.removeprefix('sha256:')[:12]} Size: {human_size(size, 3):>7}"
    if chain in tops:
        line += f" Top Layer of: {_names(tops[chain])}"
    return line


def image_tree(store: Store, name: str, what_requires: bool = False) -> str:
    """The text tree of the image's layers (bottom first), or of images built on it."""
    rec = open_store_image(store, name).record
    tops = top_layer_of(store)
    lines = _header(rec)
    if what_requires:
        children = [store.get_image(c) for c in store.children_of(rec.id)]
        lines.append("Image Layers")
        if rec.layers:
            lines.append("└── " + _layer_line(store, rec.layers[-1], tops))
        for i, child in enumerate(children):
            branch = "└── " if i == len(children) - 1 else "├── "
            extra = child.layers[len(rec.layers) :]
            label = " ".join(c.removeprefix("sha256:")[:12] for c in extra)
            lines.append(f"    {branch}{_names([child])} layers: {label}")
        return "\n".join(lines) + "\n"
    lines.append("Image Layers")
    for i, chain in enumerate(rec.layers):
        branch = "└── " if i == len(rec.layers) - 1 else "├── "
        lines.append(branch + _layer_line(store, chain, tops))
    return "\n".join(lines) + "\n"
