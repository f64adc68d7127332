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
from collections.abc import Iterable

from kiln.errors import InvalidArgument
from kiln.ops.context import Context, sweep_leftovers
from kiln.ops.disk_usage import cache_mount_usage, context_index_usage
from kiln.ops.timefmt import parse_timestamp
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuilderPruneResult", "prune_build_cache", "prune_until"]


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


def prune_until(filters: Iterable[str], verb: str = "builder prune") -> float | None:
    """The ``until`` of a builder prune's filters (``until=24h``, ``until=2024-01-02``) as
    epoch seconds, the last one given; None without one. Any other filter, or a time that
    does not parse, is refused, naming ``verb``."""
    until = None
    for item in filters:
        key, _, value = item.partition("=")
        if key != "until":
            raise InvalidArgument(f'invalid filter "{item}": {verb} takes until=TIME')
        until = parse_timestamp(value)
        if until is None:
            raise InvalidArgument(f'invalid filter "{item}": use a duration (24h) or a time')
    return until
