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
there, as with podman. Copying into the store registers the image in one
transaction under a lease, after validating it; a copy that fails removes the
blobs it added again.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from os.path import exists
from typing import TYPE_CHECKING, Any, BinaryIO

from kiln.errors import InvalidArgument, NotFound
from kiln.image import StoreDestination, open_store_image, validate_image
from kiln.image.copy import copy_image
from kiln.image.model import Image
from kiln.image.transports import close_source, transport, write_images
from kiln.oci import Platform, Reference
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.ops import image_events, registry
from kiln.ops import transports as tp
from kiln.ops.images import _match_name
from kiln.ops.registry import PullResult, PushResult

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.registry import RegistryOptions
    from kiln.registry.pull_request import PullRequest
    from kiln.snapshot import Snapshotter
    from kiln.store import ImageRecord, Store
    from kiln.store.leases import Lease


@dataclass
class TransferResult:
    image_id: str
    manifest_digest: str
    names: list[str] = field(default_factory=list)
    destination: str = ""


# -- from the store ------------------------------------------------------------------------


def store_items(ctx: Context, images: Sequence[str]) -> list[tuple[Any, list[str]]]:
    """(StoreImage, names to write) for each argument: a name keeps its name, an ID none."""
    out = []
    for arg in images:
        img = open_store_image(ctx.store, arg)
        name = _match_name(arg, list(img.record.names), Reference)
        out.append((img, [name] if name else []))
    return out


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
    [(img, names)] = store_items(ctx, [image])
    sink = transport(dest.transport)
    ctx.ev.step(f"Copying image {img.id.removeprefix('sha256:')[:12]} to {dest}")
    [res] = write_images(
        dest.transport,
        dest.path,
        [(img, sink.sink_names(dest.reference, names))],
        image_format=format,
        compression="gzip" if compress else None,
        tmp_dir=ctx.tmpdir,
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


def normalize_names(names: Sequence[str]) -> list[str]:
    """Archive names as the store keeps them; bare tags (``latest``) are not names."""
    out = []
    for n in names:
        if not n or ("/" not in n and ":" not in n and "@" not in n):
            continue
        try:
            ref = Reference.parse(n)
        except InvalidArgument:
            continue
        if ref.digest and not ref.tag:
            continue
        name = str(ref.with_tag(ref.tag)) if ref.tag else str(ref)
        if name not in out:
            out.append(name)
    return out


def unpack_into(ctx: Context, platform: Platform | None) -> Snapshotter | None:
    """Where an image coming into the store (import, load) is unpacked on the way in: the
    context's snapshotter, so a first build or ``kiln from`` finds its layers unpacked, as
    after a pull. None for an image of another platform than this host's (``platform``;
    None: the host's): such an image is mostly passed on (saved, pushed) rather than run,
    and a build for it (under emulation) unpacks it at first use."""
    if platform is not None and not Platform.host().matches(platform):
        return None
    return ctx.snapshots


def copy_into_store(
    ctx: Context, img: Image, names: Sequence[str], lease: Lease, validate: bool
) -> ImageRecord:
    """Copy one image in, its layers unpacked on the way for an image of this host's
    platform (``unpack_into``); if that fails, the blobs and trees it added are removed
    again."""
    snaps = unpack_into(ctx, img.config.platform)
    dest = StoreCopyDestination(ctx.store, lease, validate, snaps)
    try:
        res = copy_image(img, dest, list(names), tmp_dir=ctx.tmpdir)
    except BaseException:
        dest.forget_new()  # a refused archive leaves the store as it was
        raise
    finally:
        dest.discard_staged()
    return res.record if res.record is not None else ctx.store.get_image(res.image_id)


class StoreCopyDestination(StoreDestination):
    """The store as a destination that remembers the blobs it adds and, with ``validate``,
    validates an image before registering it."""

    def __init__(
        self, store: Store, lease: Lease, validate: bool = True, snaps: Snapshotter | None = None
    ):
        super().__init__(store, lease, snaps)
        self.validate = validate
        self.new: list[Digest] = []

    def has_blob(self, digest: Digest) -> bool:
        # a blob found present is kept (leased) in the same step: no GC between
        return self.store.lease_existing_blob(digest, self.lease)

    def _put(self, desc: Any, stream: BinaryIO) -> None:
        if not self.store.has_blob(desc.digest):
            self.new.append(desc.digest)
        with self.store.joined(self.lease):  # joins the lease as it is published
            self.store.put_blob(desc, stream)

    def put_blob(self, desc: Any, stream: BinaryIO) -> None:
        self._put(desc, stream)

    def put_unpacked(self, desc: Any, stream: BinaryIO) -> Any:
        if not self.store.has_blob(desc.digest):
            self.new.append(desc.digest)
        with self.store.joined(self.lease):  # joins the lease as it is published
            return super().put_unpacked(desc, stream)

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Any:
        if self.validate:
            manifest = Manifest.parse(raw, media_type)
            self._put(manifest.descriptor(), io.BytesIO(raw))
            validate_image(self.store, manifest.digest)
        return super().put_manifest(raw, media_type, names)

    def forget_new(self) -> None:
        # keeps any that an image or another lease (a concurrent load or pull that
        # found them present) has come to rely on
        self.store.delete_blobs_if_unreferenced(
            self.new, except_leases=[self.lease, *self.store.leases.open()]
        )


__all__ = [
    "StoreCopyDestination",
    "TransferResult",
    "copy_into_store",
    "unpack_into",
    "normalize_names",
    "pull_image",
    "push_image",
    "store_items",
]
