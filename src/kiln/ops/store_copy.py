"""Images into the store from a file transport (load, ``pull oci-archive:...``,
``manifest`` copies) and the store's images as copy sources: the half of the transfers that
needs no registry, so ``kiln load`` and ``kiln import`` start without the HTTP client.

``copy_into_store`` copies one image in under a lease, validated before it is registered,
its layers unpacked on the way for an image of this host's platform (``unpack_into``); a
copy that fails removes the blobs and trees it added again.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from kiln.errors import InvalidArgument
from kiln.image import StoreDestination, open_held_image, validate_image
from kiln.image.copy import copy_image
from kiln.image.model import Image
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.oci.platform import Platform
from kiln.oci.reference import Reference, local_name, match_name
from kiln.ops.events import BlobBytes

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.snapshot import Snapshotter
    from kiln.store import ImageRecord, Store
    from kiln.store.leases import Lease


def store_items(ctx: Context, images: Sequence[str], lease: Lease) -> list[tuple[Any, list[str]]]:
    """(StoreImage, names to write) for each argument: a name keeps its name, an ID none.
    Each joins ``lease``: written out while another kiln removes it, it is still whole."""
    out = []
    for arg in images:
        img = open_held_image(ctx.store, arg, lease)
        name = match_name(arg, img.record.names)
        out.append((img, [name] if name else []))
    return out


def normalize_names(names: Sequence[str], *, docker_hub: bool = False) -> list[str]:
    """Archive names as the store keeps them; bare tags (``latest``) are not names.

    A short name (``base:1``, as ``docker save`` writes it) goes under ``localhost/``, as
    podman and buildah load and pull it; ``docker_hub``: on Docker Hub
    (``docker.io/library/base:1``), as dockerd loads it (the Docker API's load)."""
    out = []
    for n in names:
        if not n or ("/" not in n and ":" not in n and "@" not in n):
            continue
        try:
            ref = Reference.parse(n if docker_hub else local_name(n))
        except InvalidArgument:
            continue
        if ref.digest and not ref.tag:
            continue
        name = str(ref.with_tag(ref.tag)) if ref.tag else str(ref)
        if name not in out:
            out.append(name)
    return out


def unpack_into(ctx: Context, platform: Platform | None) -> Snapshotter | None:
    """Where an image coming into the store (pull, import, load) is unpacked on the way in:
    the context's snapshotter, so a first build or ``kiln from`` finds its layers unpacked.
    None for an image of another platform than this host's (``platform``; None: the
    host's): such an image is mostly passed on (saved, pushed) rather than run, and a build
    for it (under emulation) unpacks it at first use."""
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
        res = copy_image(img, dest, list(names), tmp_dir=ctx.tmpdir, on_bytes=BlobBytes(ctx.ev))
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
        # nothing to unpack into (another platform's image): each layer is checked as the
        # validation checks it while it is stored, and so read once (image.copy)
        self.check_layers = validate and snaps is None
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
            validate_image(self.store, manifest.digest, checked=self.checked)
        return super().put_manifest(raw, media_type, names)

    def forget_new(self) -> None:
        # keeps any that an image or another lease (a concurrent load or pull that
        # found them present) has come to rely on
        self.store.delete_blobs_if_unreferenced(
            self.new, except_leases=[self.lease, *self.store.leases.open()]
        )


__all__ = [
    "StoreCopyDestination",
    "copy_into_store",
    "normalize_names",
    "store_items",
    "unpack_into",
]
