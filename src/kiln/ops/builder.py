"""Build cache housekeeping (``kiln builder prune``, as ``podman builder prune`` / ``buildah
prune``): the step-key -> image index the layer cache keeps, and the directories of
``RUN --mount=type=cache``.

- default: drop index entries whose image is gone (nothing else depends on them);
- ``all``: drop every index entry (the next build runs every step again) and every cache
  mount directory no running build holds.

Images the cache pointed at stay: they are images like any other, for ``kiln image prune``.
"""

from __future__ import annotations

from kiln.ops.context import Context, sweep_leftovers
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuilderPruneResult", "prune_build_cache"]


@dataclass
class BuilderPruneResult:
    cache_entries: int = 0  # build-cache index entries removed
    cache_mounts: int = 0  # RUN --mount=type=cache directories removed


def prune_build_cache(ctx: Context, all: bool = False) -> BuilderPruneResult:  # noqa: A002
    """Remove dangling build-cache entries (with ``all``: all of them and the cache mounts)."""
    sweep_leftovers(ctx)
    store = ctx.store
    result = BuilderPruneResult(cache_entries=store.prune_cache_orphans())
    if all:
        result.cache_entries += store.prune_cache(unused_for=0.0)
        result.cache_mounts = store.prune_cache_mounts()
    return result
