"""Build cache housekeeping (``kiln builder prune``, as ``podman builder prune`` / ``buildah
prune``): the step-key -> image index the layer cache keeps, and the directories of
``RUN --mount=type=cache``.

- default: drop index entries whose image is gone (nothing else depends on them);
- ``all``: drop every index entry (the next build runs every step again) and every cache
  mount directory no running build holds; with ``until`` (``docker builder prune --filter
  until=24h``), only the entries and cache mounts no build has used since then.

Images the cache pointed at stay: they are images like any other, for ``kiln image prune``.
"""

from __future__ import annotations

import time

from kiln.ops.context import Context, sweep_leftovers
from kiln.ops.disk_usage import cache_mount_usage, context_index_usage
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuilderPruneResult", "prune_build_cache"]


@dataclass
class BuilderPruneResult:
    cache_entries: int = 0  # build-cache index entries removed
    cache_mounts: int = 0  # RUN --mount=type=cache directories removed
    cache_mount_bytes: int = 0  # what they and the context indexes removed took (bytes)


def prune_build_cache(
    ctx: Context,
    all: bool = False,  # noqa: A002
    until: float | None = None,
) -> BuilderPruneResult:
    """Remove dangling build-cache entries (with ``all``: all of them and the cache mounts;
    with ``until``, epoch seconds, only what no build has used since)."""
    sweep_leftovers(ctx)
    store = ctx.store
    result = BuilderPruneResult(cache_entries=store.prune_cache_orphans())
    if all:
        before = cache_mount_usage(ctx) + context_index_usage(ctx)
        unused_for = 0.0 if until is None else max(0.0, time.time() - until)
        result.cache_entries += store.prune_cache(unused_for=unused_for)  # indexes too
        result.cache_mounts = store.prune_cache_mounts(used_before=until)
        left = set(store.list_cache_mounts()) | {i.name for i in store.list_context_indexes()}
        result.cache_mount_bytes = sum(c.size for c in before if c.name not in left)
    return result
