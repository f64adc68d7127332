"""One image between the store and any transport: the copy under push, pull, save,
load, ``manifest add`` and ``FROM oci-archive:...``.

A file transport (``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``) is found
in ``kiln.image.transports.TRANSPORTS`` and copied with ``kiln.image.copy_image``;
``docker://`` is handed to the registry use cases (``kiln.ops.registry``: short names,
pull policy, credentials). Whole manifest lists are ``kiln.ops.manifest_transfer``'s;
``kiln.ops.file_transfer`` (what front ends call) chooses between the two.

Digests are kept: the manifest bytes are copied unchanged whenever no format
or compression change is needed (oci:, oci-archive:, dir:); a docker-archive
stores uncompressed layers, so only the image ID (the config digest) survives
there, as with podman. Copying into the store (``kiln.ops.store_copy``) registers the
image in one transaction under a lease, after validating it; a copy that fails removes
the blobs it added again.
"""

from __future__ import annotations

from dataclasses import field
from os.path import exists
from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument, NotFound
from kiln.ops import image_events, registry
from kiln.ops import transports as tp
from kiln.ops.events import BlobBytes
from kiln.ops.registry import PullResult, PushResult
from kiln.ops.store_copy import copy_into_store, normalize_names, store_items
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.registry import RegistryOptions
    from kiln.registry.pull_request import PullRequest


@dataclass
class TransferResult:
    image_id: str
    manifest_digest: str
    names: list[str] = field(default_factory=list)
    destination: str = ""


# -- from the store ------------------------------------------------------------------------


def push_image(
    ctx: Context,
    image: str,
    dest: tp.TransportRef,
    *,
    format: str | None = None,
    compress: bool = False,
    compression: str | None = None,
    options: RegistryOptions | None = None,
) -> TransferResult | PushResult:
    """Copy the stored ``image`` to ``dest``; ``format``: ``oci``/``docker`` to convert the
    manifest (default: as stored), ``v2s1`` (a signed schema 1 manifest) for registries.
    ``compression`` and ``options`` are the registry push's (``docker://``)."""
    if format == "v2s1" and dest.transport != tp.DOCKER:
        raise InvalidArgument(
            f"{dest}: kiln writes Docker schema 1 (v2s1) manifests to registries only "
            "(docker://); use v2s2 or oci here"
        )
    if dest.transport == tp.DOCKER:
        return registry.push(
            ctx,
            image,
            dest.reference,
            format=format,
            compression=compression,
            compress=compress,
            options=options,
        )
    if dest.transport == tp.STORE:
        raise InvalidArgument(f'"{dest}": push needs a destination transport')
    with ctx.store.lease() as lease:
        [(img, names)] = store_items(ctx, [image], lease)
        from kiln.image.transports import transport, write_images  # start-up: a pull needs none

        sink = transport(dest.transport)
        ctx.ev.step(f"Copying image {img.id.removeprefix('sha256:')[:12]} to {dest}")
        [res] = write_images(
            dest.transport,
            dest.path,
            [(img, sink.sink_names(dest.reference, names))],
            image_format=format,
            compression="gzip" if compress else None,
            tmp_dir=ctx.tmpdir,
            on_bytes=BlobBytes(ctx.ev),
        )
        digest = str(res.manifest_digest)
        ctx.ev.step(f"Writing manifest to image destination {dest}", digest=digest)
        image_events.record(ctx, "push", str(dest), image)
        return TransferResult(img.id, digest, list(names), str(dest))


# -- into the store ------------------------------------------------------------------------


def pull_image(ctx: Context, request: PullRequest) -> TransferResult | PullResult:
    """Copy the one image ``request.source`` names into the store (no transport:
    ``docker://``). A registry pull (``kiln.ops.registry.pull``) alone reads the policy,
    the platform, ``all_tags`` and the registry options; a file transport's image is
    validated before it is registered."""
    src = tp.parse_transport(request.source, default=tp.DOCKER)
    if src.transport == tp.DOCKER:
        return registry.pull(ctx, request)
    if not exists(src.path):
        raise NotFound(f"{src.path}: no such file or directory")
    from kiln.image.transports import close_source, transport  # start-up: ~15-30 ms

    img = transport(src.transport).open_source(src.path, src.reference, tmp_dir=ctx.tmpdir)
    try:
        names = normalize_names(img.names)
        ctx.ev.step(f"Copying image {img.manifest.config.digest.hex[:12]} from {src}")
        with ctx.store.lease() as lease:
            rec = copy_into_store(ctx, img, names, lease, validate=True)
    finally:
        close_source(img)
    for name in names or [str(src)]:
        image_events.record(ctx, "pull", name, name)
    ctx.ev.result(rec.id.removeprefix("sha256:"), id=rec.id, names=names)
    return TransferResult(rec.id, rec.manifest_digest, names, str(src))


__all__ = ["TransferResult", "pull_image", "push_image"]
