"""``system df``: how much space the store's images take, and how much they share.

Sizes are uncompressed layer sizes, as image sizes are everywhere else in kiln
(podman's and Docker's ``Size``). A layer counts once however many images use it:

- ``layers_size`` is the sum over every layer some image uses;
- an image's ``shared_size`` is the part of its layers another image uses too,
  its ``unique_size`` the rest (what removing it alone would free).

kiln has no runtime containers or volumes; working containers show up only as the
``containers`` count of the image they were made from (they keep it in use). Its build
cache of steps is images; what else builds keep on disk is the ``build_cache``: the ``RUN
--mount=type=cache`` directories (BuildKit's ``exec.cachemount`` records) and the checksum
indexes of build context directories (its ``source.local`` ones), which ``docker system
df`` counts as build cache and ``kiln builder prune --all`` removes.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import TYPE_CHECKING

from kiln.ops.images import ImageSummary, summarize
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.ops.context import Context


@dataclass
class ImageUsage:
    summary: ImageSummary
    shared_size: int
    unique_size: int
    layers: frozenset[str] = frozenset()  # chain ids

    @property
    def active(self) -> bool:
        return self.summary.containers > 0


#: BuildKit's record types, as ``docker system df -v`` shows them
CACHE_MOUNT, CONTEXT_INDEX = "exec.cachemount", "source.local"


@dataclass(frozen=True)
class BuildCacheItem:
    """One thing builds keep on disk beside images."""

    kind: str  # CACHE_MOUNT or CONTEXT_INDEX
    name: str  # a cache mount's directory name (the id made safe, a hash), an index's hash
    size: int  # apparent bytes, as ``du -sb`` counts them
    in_use: bool  # a RUN holds it now (a prune leaves it)
    last_used: float  # when a RUN took it (cache mount) or a build rewrote it (index)
    description: str


@dataclass
class DiskUsage:
    layers_size: int = 0
    images: list[ImageUsage] = field(default_factory=list)
    build_cache: list[BuildCacheItem] = field(default_factory=list)
    layer_sizes: dict[str, int] = field(default_factory=dict, repr=False)  # chain id -> bytes
    held: frozenset[str] = frozenset()  # chain ids the image of some container uses

    @property
    def active_images(self) -> int:
        return sum(1 for i in self.images if i.active)

    @property
    def reclaimable(self) -> int:
        """What removing every image no container uses would free."""
        counted = set().union(*(i.layers for i in self.images))
        return self.layers_size - sum(self.layer_sizes.get(c, 0) for c in counted & self.held)

    def shown(self) -> DiskUsage:
        """The usage of the images a plain image list shows (no intermediate ones), sizes
        and sharing worked out among them, as dockerd's ``system df`` counts; the layers a
        container's image holds stay held, intermediate or not."""
        kept = [i.summary for i in self.images if not i.summary.intermediate]
        chains = {i.summary.id: i.layers for i in self.images}
        out = _measured(kept, chains, self.layer_sizes, self.held)
        out.build_cache = self.build_cache
        return out


def disk_usage(ctx: Context) -> DiskUsage:
    """Every image in the store (intermediate ones too) with its shared and unique sizes."""
    records = ctx.store.list_images(blobs=False)
    sizes = {layer.chain_id: int(layer.uncompressed_size) for layer in ctx.store.list_layers()}
    chains = {r.id: frozenset(r.layers) for r in records}
    summaries = summarize(ctx, records)
    held = frozenset().union(*(chains[s.id] for s in summaries if s.containers > 0))
    out = _measured(summaries, chains, sizes, held)
    out.build_cache = cache_mount_usage(ctx) + context_index_usage(ctx)
    return out


def _measured(
    summaries: list[ImageSummary],
    chains: dict[str, frozenset[str]],
    sizes: dict[str, int],
    held: frozenset[str],
) -> DiskUsage:
    """``summaries`` with their sizes: a layer is shared when two of them use it."""
    users: dict[str, int] = {}
    for s in summaries:
        for chain_id in chains[s.id]:
            users[chain_id] = users.get(chain_id, 0) + 1
    out = DiskUsage(sum(sizes.get(c, 0) for c in users), layer_sizes=sizes, held=held)
    for s in summaries:
        chain = chains[s.id]
        shared = sum(sizes.get(c, 0) for c in chain if users[c] > 1)
        unique = sum(sizes.get(c, 0) for c in chain if users[c] <= 1)
        out.images.append(ImageUsage(s, shared, unique, chain))
    out.images.sort(key=lambda i: (i.summary.created_ts, i.summary.id), reverse=True)
    return out


def cache_mount_usage(ctx: Context) -> list[BuildCacheItem]:
    """The ``RUN --mount=type=cache`` directories with their sizes, largest first."""
    from kiln.snapshot.usage import tree_size  # start-up: only df sizes trees

    out = []
    for path, in_use in ctx.store.cache_mount_users().items():
        try:
            last_used = os.lstat(path).st_mtime
        except FileNotFoundError:  # pruned meanwhile
            continue
        name = os.path.basename(path)
        out.append(BuildCacheItem(CACHE_MOUNT, name, tree_size(path), in_use, last_used,
                                  f"cached mount {name}"))  # fmt: skip
    return sorted(out, key=lambda c: (-c.size, c.name))


def context_index_usage(ctx: Context) -> list[BuildCacheItem]:
    """The checksum indexes of build context directories, largest first."""
    out = [
        # the directory is not named: the API's callers need not learn the host's paths
        BuildCacheItem(CONTEXT_INDEX, i.name, i.size, False, i.written, "local source for context")
        for i in ctx.store.list_context_indexes()
    ]  # fmt: skip
    return sorted(out, key=lambda c: (-c.size, c.name))


__all__ = [
    "CACHE_MOUNT",
    "CONTEXT_INDEX",
    "BuildCacheItem",
    "DiskUsage",
    "ImageUsage",
    "cache_mount_usage",
    "context_index_usage",
    "disk_usage",
]
