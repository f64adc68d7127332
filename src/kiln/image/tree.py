"""Which images share which layers: ``kiln image tree`` (as ``podman image tree``)."""

from __future__ import annotations

from dataclasses import field

from kiln.image.store_image import open_store_image
from kiln.store import ImageRecord, Store
from kiln.util.lazy_dataclass import dataclass

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
    line = f"ID: {chain.removeprefix('sha256:')[:12]} Size: {human_size(size):>7}"
    names = [n for r in tops.get(chain, []) for n in r.names]
    if names:  # as podman: unnamed images are not listed
        line += f" Top Layer of: [{' '.join(names)}]"
    return line


def image_tree(store: Store, name: str, what_requires: bool = False) -> str:
    """The text tree of the image's layers (bottom first), or (``what_requires``) of the
    layers stacked on its top layer by any image, as podman's ``image tree`` prints them."""
    rec = open_store_image(store, name).record
    tops = top_layer_of(store)
    root = "\n".join([*_header(rec), "Image Layers" if rec.layers else "No Image Layers"])
    items: list[_Node] = []
    if what_requires and rec.layers:
        children, parents = _layer_tree(store)
        _stack(store, rec.layers[-1], items, children, parents, tops)
    else:
        items = [_Node(_layer_line(store, chain, tops)) for chain in rec.layers]
    return "\n".join([root, *_render(items, [])]) + "\n"


@dataclass
class _Node:
    text: str
    items: list[_Node] = field(default_factory=list)


def _layer_tree(store: Store) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Chain id -> the chain ids stacked right on it (in the order images list them),
    and chain id -> the one it is stacked on."""
    children: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    for rec in store.list_images():
        for below, above in zip(rec.layers, rec.layers[1:], strict=False):
            parents[above] = below
            kids = children.setdefault(below, [])
            if above not in kids:
                kids.append(above)
    return children, parents


def _stack(
    store: Store,
    chain: str,
    into: list[_Node],
    children: dict[str, list[str]],
    parents: dict[str, str],
    tops: dict[str, list[ImageRecord]],
) -> None:
    """podman's walk (libimage's imageTreeTraverseChildren): a layer without siblings
    continues its parent's list; one with siblings opens a branch of its own."""
    node = _Node(_layer_line(store, chain, tops))
    into.append(node)
    below = parents.get(chain)
    if below is not None and len(children.get(below, [])) > 1:
        into = node.items
    for child in children.get(chain, []):
        _stack(store, child, into, children, parents, tops)


def _render(items: list[_Node], open_levels: list[bool]) -> list[str]:
    """Lines of ``items`` as gotree prints them (``├──``/``└──``, ``│   `` under a level
    that goes on)."""
    lines = []
    for i, node in enumerate(items):
        last = i == len(items) - 1
        indent = "".join("    " if done else "│   " for done in open_levels)
        lines.append(indent + ("└── " if last else "├── ") + node.text)
        lines += _render(node.items, [*open_levels, last])
    return lines
