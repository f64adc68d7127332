"""``kiln commit C TRANSPORT:DEST``: a working container's commit written only to a
transport (a registry, an OCI layout or archive, a docker-archive, a dir), as buildah
commit writes one. Apart from ``ops.containers``: it joins containers, transfers and image
removal, which import one another's modules in turn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.ops import file_transfer
from kiln.ops.containers import _load as load_container
from kiln.ops.containers import commit_container
from kiln.ops.images import remove_images

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.ops.pull_options import RegistryOptions
    from kiln.store import ImageRecord


def commit_container_to(
    ctx: Context,
    name: str,
    destination: str,
    *,
    rm: bool = False,
    options: RegistryOptions | None = None,
    **commit: Any,
) -> ImageRecord:
    """``kiln commit C docker://REF`` (or ``oci:``, ``oci-archive:``, ``docker-archive:``,
    ``dir:``): the image goes to ``destination`` only, as buildah commit writes it; the
    store keeps no copy (the dangling image the commit made is removed once copied).
    ``rm`` removes the container once the image is there; ``commit``: ``commit_container``'s
    keywords. Returns the image's record (its ID is what buildah prints)."""
    record = commit_container(ctx, name, None, **commit)
    try:
        file_transfer.push(ctx, record.id, destination, options=options)
    finally:
        if not ctx.store.names_of(record.id):  # made here, not an image already named
            remove_images(ctx, [record.id], prune_parents=False, ignore=True)
    if rm:
        load_container(ctx, name).delete()
    return record
