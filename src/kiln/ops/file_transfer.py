"""push and pull as the front ends call them: one image through ``kiln.ops.transfer``
(every transport: ``docker://``, ``oci:``, ``oci-archive:``, ``docker-archive:``,
``dir:``), a manifest list through ``kiln.ops.manifests`` (push) and
``kiln.ops.manifest_transfer`` (``pull --all-platforms``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument, KilnError
from kiln.ops import transfer
from kiln.ops import transports as tp
from kiln.ops.events import PULL_STOPS_AT
from kiln.ops.transfer import TransferResult
from kiln.store import IndexRecord

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.ops.registry import PullResult, PushResult
    from kiln.registry import RegistryOptions
    from kiln.registry.pull_request import PullRequest


def push(
    ctx: Context,
    image: str,
    destination: str | None = None,
    *,
    format: str | None = None,
    compress: bool = False,
    compression: str | None = None,
    all: bool = False,
    options: RegistryOptions | None = None,
) -> TransferResult | PushResult:
    """Copy ``image`` from the store to ``destination`` (default: ``docker://IMAGE``).

    ``format``: ``oci`` or ``docker`` to convert the manifest (default: as stored);
    ``v2s1`` (a signed Docker schema 1 manifest) for registries. ``compression``
    (``gzip``/``zstd``) recompresses for a registry; ``all``: a list's images too.
    """
    dest = tp.parse_transport(destination or image, default=tp.DOCKER)
    if _is_list(ctx, image):  # a manifest list: kiln.ops.manifests pushes it
        if format == "v2s1":
            raise InvalidArgument(
                f"{image} is a manifest list: Docker schema 1 has no lists; push one of its "
                "images as v2s1, or the list as v2s2 or oci"
            )
        fmt = {"docker": "v2s2"}.get(format or "", format)
        from kiln.ops import manifests  # start-up: a pull or an image's push needs none

        res = manifests.push(
            ctx, image, destination, all=all, format=fmt, compression=compression, options=options
        )
        rec = ctx.store.get_index(res.index_id)
        return TransferResult(rec.id, res.digest, list(rec.names), res.destination)
    return transfer.push_image(
        ctx, image, dest, format=format, compress=compress, compression=compression, options=options
    )


def _is_list(ctx: Context, image: str) -> bool:
    try:
        return isinstance(ctx.store.resolve(image), IndexRecord)
    except KilnError:
        return False


def pull(ctx: Context, request: PullRequest) -> TransferResult | PullResult:
    """Copy the image at ``request.source`` into the store; a bare name means
    ``docker://NAME``.

    ``request.all_platforms`` keeps a whole list; the other choices are a registry
    pull's (``kiln.ops.registry.pull``). One image: ``kiln.ops.transfer.pull_image``
    parses the source. ``request.cancel`` stops it (``Cancelled``)."""
    ctx = ctx.stopped_by(request.cancel, "the pull was cancelled", PULL_STOPS_AT)
    if request.all_platforms:  # keep the whole list (kiln.ops.manifest_transfer)
        src = tp.parse_transport(request.source, default=tp.DOCKER)
        if src.transport == tp.DOCKER and (request.platform or request.all_tags):
            raise InvalidArgument(
                "--all-platforms cannot be combined with --platform, --arch, --os, --variant "
                "or --all-tags"
            )
        return _pull_list(ctx, src, request.options)
    return transfer.pull_image(ctx, request)


def _pull_list(
    ctx: Context, src: tp.TransportRef, options: RegistryOptions | None
) -> TransferResult:
    from kiln.image.transports import transport  # start-up: a one-image pull needs neither
    from kiln.ops import manifest_transfer

    if src.transport == tp.DOCKER:
        res = manifest_transfer.pull_list(ctx, src.reference, options=options)
    elif src.is_file and transport(src.transport).HOLDS_LISTS:
        res = manifest_transfer.pull_list_from_layout(ctx, src)
    else:
        raise InvalidArgument(
            f"{src}: --all-platforms needs a source that can hold a list "
            "(docker://, oci:, oci-archive:)"
        )
    if res.index is None:
        return TransferResult(res.image_ids[0], res.digest, res.names, res.source)
    return TransferResult(res.index.id, res.digest, res.names, res.source)


# names the curated kiln.__all__ exports
push_image = push
pull_image = pull

__all__ = ["TransferResult", "pull", "pull_image", "push", "push_image"]
