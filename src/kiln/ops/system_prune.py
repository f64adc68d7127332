"""``kiln system prune`` (podman system prune, docker system prune): the build cache, then
unused images, then a collection of everything nothing keeps.

- default: build-cache entries whose image is gone and dangling images;
- ``all``: every build-cache entry and RUN cache mount no build is using
  (``kiln.ops.builder``), and every image no working container uses (``kiln.ops.images``);
- ``until`` (``--filter until=24h``): only what is older (images) or unused since then
  (build cache).

The collection that ends the image prune sweeps blobs, unpacked layers, snapshots and the
RUN stub layers nothing keeps. Working containers are the user's, as in buildah: ``kiln rm``.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument
from kiln.ops.builder import BuilderPruneResult, prune_build_cache
from kiln.ops.context import Context
from kiln.ops.images import PruneResult, prune
from kiln.ops.timefmt import parse_timestamp
from kiln.util.lazy_dataclass import dataclass

__all__ = ["SystemPruneResult", "system_prune"]


@dataclass
class SystemPruneResult:
    cache: BuilderPruneResult
    images: PruneResult

    @property
    def bytes_freed(self) -> int:
        """What left the disk: the cache mounts, and what the collection removed."""
        return self.cache.cache_mount_bytes + self.images.bytes_freed


def system_prune(ctx: Context, all: bool = False, until: str = "") -> SystemPruneResult:  # noqa: A002
    """Prune the build cache, then images, then collect (see the module)."""
    cutoff = parse_timestamp(until) if until else None
    if until and cutoff is None:
        raise InvalidArgument(f'invalid filter "until={until}": use a duration (24h) or a time')
    cache = prune_build_cache(ctx, all=all, until=cutoff)
    images = prune(ctx, all=all, filters=[f"until={until}"] if until else [])
    return SystemPruneResult(cache, images)
