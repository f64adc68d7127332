"""Images in the embedded store: open one, register one, write a new one.

Registering an image means: manifest and config blobs stored, one layer row per
chain id (diff_id, blob, sizes) and the image row, all in one store
transaction, under a lease so GC cannot take the blobs before the caller names
the image. The image ID is always the config digest.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO, Protocol

from kiln.errors import DigestMismatch, InvalidArgument, NotFound
from kiln.image.model import SourceImage, chain_ids, platform_string
from kiln.image.mutate import Addendum, append_layers, check_format
from kiln.image.unpack import unpack_stored
from kiln.oci import media_types as mt
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.store import ImageRecord, LayerRecord, Store
from kiln.util.atomic import WritebackEvery
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    import tarfile

    from kiln.archive.applier import ApplyResult
    from kiln.snapshot import Snapshotter
    from kiln.snapshot.staged import StagedLayer
    from kiln.store.ingest import Ingest
    from kiln.store.leases import Lease


class StoreImage(SourceImage):
    """An image held by the store; ``record`` is its row (names, repo digests, size).

    ``manifest`` and ``config``: the image's, already in memory (an image just written,
    e.g. a build step's, which the next step builds on), else read from the store (the
    config when first asked for)."""

    def __init__(
        self,
        store: Store,
        record: ImageRecord,
        manifest: Manifest | None = None,
        config: ImageConfig | None = None,
    ):
        if manifest is None:
            raw = _read(store, Digest.parse(record.manifest_digest))
            manifest = Manifest.parse(raw, record.manifest_media_type)
        super().__init__(store, manifest, tuple(record.names))
        if config is not None:
            self.__dict__["config"] = config  # the cached_property's value
        self.store = store
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    def uncompressed_size(self, desc: Descriptor) -> int | None:
        """The size of layer ``desc``'s tar, from the store's layer record (None if unknown)."""
        layers = self.manifest.layers
        for i, layer in enumerate(layers):
            if layer.digest == desc.digest and i < len(self.record.layers):
                try:
                    size = self.store.get_layer(self.record.layers[i]).uncompressed_size
                except NotFound:
                    return None
                return size if size > 0 else None
        return None


def _read(store: Store, digest: Digest) -> bytes:
    try:
        with store.open_blob(digest) as f:
            return f.read()
    except NotFound:
        raise NotFound(
            f"the store has lost blob {digest}; run `kiln system check` or pull the image again"
        ) from None


def open_store_image(store: Store, name_or_id: str) -> StoreImage:
    """The store's image for a name, ID, ID prefix or digest reference (NotFound otherwise)."""
    return StoreImage(store, store.resolve_image(name_or_id))


def open_held_image(store: Store, name_or_id: str, lease: Lease) -> StoreImage:
    """``open_store_image``, with the image and its blobs joined to ``lease``: what reads it
    for a while (a push, a save) still finds its blobs when another kiln removes it and
    collects meanwhile. Removed before it was held: NotFound, as if never there."""
    rec = store.resolve_image(name_or_id)
    lease.add_image(rec.id)
    try:  # an rmi between the two left the lease holding none of its blobs
        return StoreImage(store, store.get_image(rec.id))
    except NotFound:
        raise NotFound(f"{name_or_id}: image not known (it was removed meanwhile)") from None


def _uncompressed_size(
    desc: Descriptor, sizes: dict[Digest, int], known: int | None, store: Store
) -> int:
    """The tar size of layer ``desc``: as noted by the copy (``sizes``), else as the
    store's layer row has it (``known``), else its size if uncompressed, else counted."""
    if desc.digest in sizes:
        return sizes[desc.digest]
    if known is not None:
        return known
    if mt.layer_compression(desc.media_type) == "none":
        return desc.size
    # start-up: the layer streams only for a pull, a load or an import (a build knows sizes)
    from kiln.image.layers import DiffIdTee, drain

    tee = DiffIdTee(store.open_blob(desc.digest), desc.media_type)
    drain(io.BufferedReader(tee))
    return tee.uncompressed_size


def register_image(
    store: Store,
    manifest: Manifest,
    config: ImageConfig,
    names: Sequence[str] = (),
    uncompressed_sizes: dict[Digest, int] | None = None,
    lease: Lease | None = None,
    keep_stored: bool = False,
) -> ImageRecord:
    """Record an image whose blobs (layers, config) are all in the store already.

    The image ID is the config's digest, as Docker's and podman's: a config in other bytes
    (another key order or spacing) is another image. The same config under another
    manifest is the same image: a pull or a write (``--format docker`` of an OCI image)
    gives it the new manifest, as podman's store makes the last manifest written the
    image's; with ``keep_stored`` (an archive or layout copied in: ``kiln load`` of a
    pulled image's ``docker save``, whose manifest the archive synthesises) the image keeps
    the manifest it has, so its digest still names what its registry holds, and ``names``
    are added to it (``docker load`` of an image present only tags it)."""
    for desc in [manifest.config, *manifest.layers]:
        if not store.has_blob(desc.digest):
            raise NotFound(f"blob {desc.digest} must be in the store before its image")
    own_lease = store.lease() if lease is None else contextlib.nullcontext(lease)
    stored = _stored_under_another_manifest(store, manifest) if keep_stored else None
    # the row is read in the transaction that wrote it: another kiln's rmi right after
    # must not turn a finished registration into "image not known"
    if stored is not None:
        with own_lease as holder, store.transaction():
            for name in names:
                store.tag(name, stored.id)
            holder.add_image(stored.id)
            return store.get_image(stored.id)
    layer_rows, record = image_rows(store, manifest, config, uncompressed_sizes)
    with own_lease as holder:
        store.put_blob(manifest.descriptor(), io.BytesIO(manifest.raw))
        holder.add_blob(manifest.digest)
        with store.transaction():
            record_image(store, layer_rows, record, names, holder, config)
            return store.get_image(record.id)


def _stored_under_another_manifest(store: Store, manifest: Manifest) -> ImageRecord | None:
    """The image with ``manifest``'s config when it is stored under another manifest whose
    blob is present (one whose manifest is gone is registered anew: a pull repairs it)."""
    try:
        rec = store.get_image(str(manifest.config.digest))
    except NotFound:
        return None
    if rec.manifest_digest == str(manifest.digest):
        return None
    return rec if store.has_blob(Digest.parse(rec.manifest_digest)) else None


def record_image(
    store: Store, layer_rows: list[LayerRecord], record: ImageRecord, names: Sequence[str],
    lease: Lease, config: ImageConfig | None = None,
) -> None:  # fmt: skip
    """The rows of an image (``image_rows``) whose blobs are all stored, joining ``lease``,
    in the caller's transaction (or one of its own). ``config``: the image's, parsed from
    its stored bytes (its history indexes the image's lineage without a read back)."""
    stored = (
        config is not None
        and config.raw
        and str(Digest.of_bytes(config.raw)) == (record.config_digest or record.id)
    )
    with store.transaction():
        store.put_layers(layer_rows)
        store.put_image(record, history=config.history if stored and config else None)
        for name in names:
            store.tag(name, record.id)
        lease.add_image(record.id)


def image_rows(
    store: Store,
    manifest: Manifest,
    config: ImageConfig,
    uncompressed_sizes: dict[Digest, int] | None = None,
) -> tuple[list[LayerRecord], ImageRecord]:
    """The layer rows and the image row ``register_image`` writes."""
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"image has {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    sizes = uncompressed_sizes or {}
    chains = chain_ids(config.diff_ids)
    known = store.uncompressed_sizes(chains)
    layer_rows = []
    for i, desc in enumerate(manifest.layers):
        layer_rows.append(
            LayerRecord(
                chain_id=chains[i],
                diff_id=config.diff_ids[i],
                parent=chains[i - 1] if i else None,
                blob_digest=str(desc.digest),
                media_type=desc.media_type,
                size=desc.size,
                uncompressed_size=_uncompressed_size(desc, sizes, known.get(chains[i]), store),
            )
        )
    record = ImageRecord(
        id=str(manifest.config.digest),
        manifest_digest=str(manifest.digest),
        manifest_media_type=manifest.media_type,
        config_digest=str(manifest.config.digest),
        created=config.created,
        size=sum(r.uncompressed_size for r in layer_rows),
        layers=chains,
        platform=platform_string(config),
        labels=dict(config.config.labels or {}),
        layer_blobs=[str(desc.digest) for desc in manifest.layers],
    )
    return layer_rows, record


class StoreDestination:
    """The store as a copy destination: blobs go in verified, ``put_manifest`` registers.

    With ``snaps`` (a Snapshotter) layers are unpacked on the way in, as a pull unpacks
    them: ``put_unpacked`` stores a layer blob and applies its tar into a staged tree in
    one pass, and ``put_manifest`` records the trees (``unpack_stored``: bottom up, not
    yet durable, each diff_id checked against the config) before the image is registered.
    Whoever copies calls ``discard_staged`` at the end: a failed copy keeps no tree."""

    def __init__(self, store: Store, lease: Lease | None = None, snaps: Snapshotter | None = None):
        self.store = store
        self.lease = lease
        self.snaps = snaps
        self.uncompressed_sizes: dict[Digest, int] = {}
        self.record: ImageRecord | None = None
        self.staged: dict[str, StagedLayer] = {}  # blob digest -> its unpacked tree
        #: blob digest -> diff_id of the layers ``put_unpacked`` checked as ``validate_image``
        #: checks a layer (its ``checked``): validating the image reads them no second time
        self.checked: dict[str, str] = {}

    def has_blob(self, digest: Digest) -> bool:
        """Present blobs are skipped by the copy, so they join the lease in the same step
        (a GC between the check and the copy's end cannot sweep them)."""
        if self.lease is None:
            return self.store.has_blob(digest)
        return self.store.lease_existing_blob(digest, self.lease)

    def recorded_layers(
        self, layers: Sequence[Descriptor], diff_ids: Sequence[str]
    ) -> set[tuple[Digest, str]]:
        """(blob, diff_id) of the ``layers`` the store already records at the very chains
        ``diff_ids`` make (each was checked against its diff_id when it came in): a present
        blob not vouched for so may be claimed under a diff_id it does not have."""
        chains = chain_ids(list(diff_ids))
        recorded = self.store.chain_blobs(chains)
        return {
            (d.digest, str(diff_id))
            for d, diff_id, c in zip(layers, diff_ids, chains, strict=False)
            if recorded.get(c) == str(d.digest)
        }

    def stored_diff_id(self, desc: Descriptor) -> str:
        """The diff_id of layer blob ``desc`` as stored: its tar hashed, read back."""
        # start-up: read back only for a present blob the store's records do not vouch for
        from kiln.image.layers import DiffIdTee, drain

        tee = DiffIdTee(self.store.open_blob(desc.digest), desc.media_type)
        drain(io.BufferedReader(tee))
        return tee.diff_id

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        self.store.put_blob(desc, stream)
        if self.lease is not None:
            self.lease.add_blob(desc.digest)

    def put_unpacked(self, desc: Descriptor, stream: BinaryIO) -> ApplyResult:
        """Store layer blob ``desc`` from ``stream`` (digest and size verified) and unpack
        it into a staged tree in the same pass: the applier reads the blob, and every byte
        it reads goes on to the ingest. Returns what the applier measured (the diff_id, for
        the caller to check). A blob that is not a layer the applier takes is refused
        after its digest is checked (a wrong blob is a digest mismatch, not a broken layer)
        and keeps nothing.

        The same pass checks the layer as ``validate_image`` would: compressed as its media
        type says and every member passing ``check_tar``'s checks. A layer that passes is
        noted in ``checked``; one that does not is left for validation to read again and
        refuse, with its own message."""
        if self.snaps is None:
            return self._put_checked(desc, stream)
        # start-up: the layer streams only for a pull, a load or an import
        from kiln.image.layers import SliceTee

        # kept in ``staged`` for ``discard_staged``
        staged = self.snaps.stage_layer(lambda s: self.staged.update({str(desc.digest): s}))
        with self.store.ingest("", desc) as ing:
            tee = SliceTee(stream, IngestWriter(ing))
            members = _MemberCheck()
            try:
                result = staged.apply(tee, on_entry=members)
                tee.finish()  # what follows the tar's end is the blob's too
            except InvalidArgument as exc:
                if not isinstance(exc, DigestMismatch):
                    tee.finish()
                    ing.seal()  # DigestMismatch first, if the blob is not the one named
                raise
            ing.commit()
        if self.lease is not None:
            self.lease.add_blob(desc.digest)
        if members.passed and result.compression == mt.layer_compression(desc.media_type):
            self.checked[str(desc.digest)] = str(result.diff_id)
        return result

    def _put_checked(self, desc: Descriptor, stream: BinaryIO) -> ApplyResult:
        """``put_unpacked`` with nothing to unpack into (an image of another platform):
        the blob is stored and checked as ``validate_image`` checks a layer in one pass,
        and noted in ``checked``, so validating the image does not read it again."""
        # start-up: the layer streams and checks only for a pull, a load or an import
        from kiln.archive.applier import ApplyResult
        from kiln.image.layers import SliceTee
        from kiln.image.validate import check_layer_stream

        what = f"layer {desc.digest}"
        with self.store.ingest("", desc) as ing:
            tee = SliceTee(stream, IngestWriter(ing))
            try:
                diff_id, size = check_layer_stream(tee, desc.media_type, what)
                tee.finish()  # what follows the tar's end is the blob's too
            except InvalidArgument as exc:
                if isinstance(exc, DigestMismatch):
                    raise
                tee.finish()
                ing.seal()  # DigestMismatch first, if the blob is not the one named
                raise InvalidArgument(
                    f"invalid image: {what} cannot be read as {desc.media_type}: {exc}"
                ) from None
            ing.commit()
        if self.lease is not None:
            self.lease.add_blob(desc.digest)
        self.checked[str(desc.digest)] = diff_id
        from kiln.archive.compression import Compression  # start-up: a cached build stores none

        compression = Compression(mt.layer_compression(desc.media_type))
        return ApplyResult(diff_id, size, desc.size, 0, compression)

    def discard_staged(self) -> None:
        """Drop the staged trees no layer took (all of them when the copy failed)."""
        # start-up: staged trees only for a pull, a load or an import
        from kiln.snapshot.staged import discard_staged

        discard_staged(self.staged)

    def note_layer(self, digest: Digest, diff_id: str, uncompressed_size: int) -> None:
        self.uncompressed_sizes[digest] = uncompressed_size

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        manifest = Manifest.parse(raw, media_type)
        config = ImageConfig.parse(_read(self.store, manifest.config.digest))
        if self.snaps is not None and self.staged:  # every blob is in: the config vouches
            unpack_stored(self.store, self.snaps, manifest, config, self.staged)
        self.record = register_image(
            self.store, manifest, config, names, self.uncompressed_sizes, self.lease,
            keep_stored=True,
        )  # fmt: skip
        return manifest.descriptor()


class _MemberCheck:
    """``check_tar``'s member checks beside an applier (its ``on_entry``), noting whether
    every member passed rather than refusing one."""

    def __init__(self) -> None:
        # start-up: the tar checks only for a pull, a load or an import
        from kiln.archive.tar_check import member_check

        self._check = member_check()
        self.passed = True

    def __call__(self, member: tarfile.TarInfo) -> None:
        if self.passed:
            try:
                self._check(member)
            except InvalidArgument:
                self.passed = False


class LayerBlob(Protocol):
    """A layer blob as written: ``archive.tar_writer.LayerResult``, ``image.layers.Recompressed``."""

    @property
    def diff_id(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def uncompressed_size(self) -> int: ...

    @property
    def compression(self) -> str: ...  # a name, or a str enum of names


class IngestWriter(io.RawIOBase):
    """A file-like face for a store ingest (``write``, ``flush``), the one every blob
    written by a stream goes through: a commit's new layer (``write_layer``), a loaded or
    imported layer (``put_unpacked``, ``recompress``).

    The ingest hashes and counts what it writes, so this is also a ``HashingSink``
    (``digest``, ``size``): ``write_layer`` takes the blob digest from it. ``writeback``
    (a commit's layer, published and fsynced right after): the blob's writeback starts
    every 8 MiB, so its fsync at the end finds little left. ``on_write(n)`` hears the
    bytes written so far after every write (progress)."""

    def __init__(
        self, ingest: Ingest, *, writeback: bool = False,
        on_write: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        self.ingest = ingest
        self._writeback = WritebackEvery(ingest.fd) if writeback else None
        self._on_write = on_write

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview, /) -> int:  # type: ignore[override]
        self.ingest.write(data)
        if self._writeback is not None:
            self._writeback.wrote(len(data))
        if self._on_write is not None:
            self._on_write(self.ingest.offset)
        return len(data)

    @property
    def digest(self) -> str:
        return str(self.ingest.digest())

    @property
    def size(self) -> int:
        return self.ingest.offset


@dataclass(frozen=True)
class NewLayer:
    """A layer whose blob is already in the store (e.g. written by archive.write_layer).

    ``result`` is an ``archive.tar_writer.LayerResult`` (or any ``LayerBlob``).
    ``history`` is this layer's history entry; None means the config's history
    already has it.
    """

    result: LayerBlob
    history: History | None = None
    media_type: str = ""


def _compression_name(value: str) -> str:
    return getattr(value, "value", value) or "none"


def write_image(
    store: Store,
    base: SourceImage | None,
    layers: Sequence[NewLayer],
    config: ImageConfig,
    image_format: str = "oci",
    lease: Lease | None = None,
    names: Sequence[str] = (),
) -> ImageRecord:
    """Store a new image: ``base``'s layers + ``layers``, with ``config``, named ``names``
    in the transaction that records it.

    ``config.rootfs.diff_ids`` is recomputed (base's + the new layers'). History:
    ``config.history`` followed by each new layer's ``history`` (if given); the
    count of non-empty history entries must equal the layer count. Without ``names``
    the lease keeps the unnamed image alive until the caller names it.
    """
    image_format = check_format(image_format)
    added: list[Addendum] = []
    sizes: dict[Digest, int] = {}
    for layer in layers:
        res = layer.result
        digest = Digest.parse(str(res.digest))
        if not store.has_blob(digest):
            raise NotFound(f"layer blob {digest} is not in the store; write it there first")
        media_type = layer.media_type or mt.layer_media_type(
            image_format, _compression_name(res.compression)
        )
        desc = Descriptor(media_type, digest, int(res.size))
        added.append(Addendum(desc, str(res.diff_id), layer.history))
        sizes[digest] = int(res.uncompressed_size)
    new = append_layers(base, added, config, image_format)
    with store.lease() as own:
        holder = lease or own
        store.put_blob(new.config_descriptor, io.BytesIO(new.config_raw))
        holder.add_blob(new.config_descriptor.digest)
        return register_image(store, new.manifest, new.config, names, sizes, holder)
