"""Copy an image from any source to any destination, optionally converting it.

A destination is anything with ``has_blob``, ``put_blob(desc, stream)`` and
``put_manifest(raw, media_type, names) -> Descriptor`` — the store (through
:class:`StoreDestination`), an OCI layout, an oci-archive or docker-archive
writer, a registry. Optional extras it may have: ``required_compression``
(docker-archive wants ``"none"``), ``note_layer(digest, diff_id, size)``, and a
snapshotter ``snaps``: then a layer copied as it is goes in through
``put_unpacked(desc, stream) -> ApplyResult``, which stores and unpacks it in one pass
(the store with a snapshotter: a load leaves its layers unpacked), or with
``check_layers`` true stores it and checks it as validation would in one pass (a load of
another platform's image: nothing unpacked, nothing read twice). A source may offer
``uncompressed_size(desc) -> int | None`` (the store's layer records do).

Layers are copied as they are unless a format or compression change needs
new bytes: then each is decompressed, its tar hashed (the diff_id never
changes, and is checked) and compressed again in one pass. Decompressing only
(docker-archive) with a known tar size streams the tar straight into the
destination, whose digest check is the diff_id check: one hash, no spool file.
With nothing to convert the manifest bytes are copied too, so the manifest
digest survives.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Protocol, TypedDict, cast

from kiln.archive.compression import CHUNK, open_decompressed
from kiln.archive.readahead import ReadAhead
from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image.layers import DiffIdTee, recompress
from kiln.image.model import Image
from kiln.image.store_image import StoreDestination
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Manifest
from kiln.store import ImageRecord, Store
from kiln.util import choices
from kiln.util.lazy_dataclass import dataclass

COMPRESSIONS = choices.COMPRESSIONS


class ImageDestination(Protocol):
    def has_blob(self, digest: Digest) -> bool: ...

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None: ...

    def put_manifest(
        self, raw: bytes, media_type: str, names: Sequence[str] = ()
    ) -> Descriptor: ...


class CopyOptions(TypedDict, total=False):
    """``copy_image``'s keyword options, for callers that pass them on (the transports)."""

    image_format: str | None
    compression: str | None
    level: int | None
    verify: bool
    tmp_dir: str | None
    on_bytes: LayerBytes | None


#: ``on_bytes(desc, n)``: ``n`` bytes of the source's layer blob ``desc`` read so far
LayerBytes = Callable[[Descriptor, int], None]


class CountedReads:
    """A layer blob as the source opened it, telling ``on_read`` the bytes read so far;
    everything else (seek, fileno, close, ...) is the blob's own."""

    def __init__(self, stream: Any, on_read: Callable[[int], None]) -> None:
        self._stream, self._on_read, self._read = stream, on_read, 0

    def _count(self, n: int) -> None:
        if n:
            self._read += n
            self._on_read(self._read)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self._count(len(data))
        return data

    def readinto(self, b: Any) -> int:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:  # a reader with read() only
            view = memoryview(b).cast("B")
            data = self._stream.read(len(view))
            view[: len(data)] = data
            n = len(data)
        else:
            n = readinto(b) or 0
        self._count(n)
        return n

    def __enter__(self) -> CountedReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@dataclass(frozen=True)
class CopyResult:
    """The manifest copied, and the record when the destination is the store."""

    manifest: Manifest
    record: ImageRecord | None = None  # when the destination is the store

    @property
    def manifest_digest(self) -> Digest:
        return self.manifest.digest

    @property
    def config_digest(self) -> Digest:
        return self.manifest.config.digest

    @property
    def image_id(self) -> str:
        return str(self.manifest.config.digest)


def _diff_mismatch(desc: Descriptor, expected: str, got: str) -> DigestMismatch:
    return DigestMismatch(
        f"layer {desc.digest} unpacks to {got} but the image config says {expected}; "
        "the image is corrupt",
        expected,
        got,
    )


class _Copier:
    def __init__(
        self,
        src: Image,
        dst: ImageDestination,
        image_format: str,
        compression: str | None,
        *,
        level: int | None = None,
        verify: bool = True,
        tmp_dir: str | None = None,
        on_bytes: LayerBytes | None = None,
    ):
        self.src = src
        self.on_bytes = on_bytes
        self.dst = dst
        self.format = image_format
        self.compression = compression
        self.level = level
        self.verify = verify
        self.tmp_dir = tmp_dir
        # the store: the present layer blobs (and diff_ids) its records vouch for; any other
        # present layer is read back
        recorded = getattr(dst, "recorded_layers", None) if verify else None
        self.vouched = recorded(src.layers, src.config.diff_ids) if recorded else None

    def _open_layer(self, desc: Descriptor) -> Any:
        stream = self.src.open_layer(desc)
        on_bytes = self.on_bytes
        if on_bytes is None:
            return stream
        return CountedReads(stream, lambda n: on_bytes(desc, n))

    def _note(self, digest: Digest, diff_id: str, size: int) -> None:
        note = getattr(self.dst, "note_layer", None)
        if note is not None:
            note(digest, diff_id, size)

    def layer(self, desc: Descriptor, diff_id: str) -> Descriptor:
        current = mt.layer_compression(desc.media_type)
        want = self.compression or current
        if desc.urls and not self.src.blobs.has_blob(desc.digest):
            return desc  # foreign layer: the descriptor travels, the bytes do not
        if want == current:
            return self._as_is(desc, diff_id)
        if want == "none":
            known = getattr(self.src, "uncompressed_size", None)
            size = known(desc) if known is not None else None
            if size:
                return self._decompressed(desc, diff_id, size)
        return self._recompressed(desc, diff_id, want)

    def _decompressed(self, desc: Descriptor, diff_id: str, size: int) -> Descriptor:
        """Inflate straight into the destination: the uncompressed blob's digest *is* the
        diff_id and its size is known, so nothing is spooled; the destination's own digest
        check (every sink verifies what it is given) is the diff_id check, in the same pass."""
        new = Descriptor(mt.layer_media_type(self.format, "none"), Digest.parse(diff_id), size)
        if not self.dst.has_blob(new.digest):
            # inflate on a second thread while the destination hashes and writes
            with self._open_layer(desc) as blob, ReadAhead(open_decompressed(blob)) as plain:
                try:
                    # a raw, unseekable reader: sinks only read a stream they cannot seek
                    self.dst.put_blob(new, cast(BinaryIO, plain))
                except DigestMismatch as exc:
                    got = exc.actual or f"a size other than the recorded {size} bytes"
                    raise _diff_mismatch(desc, diff_id, got) from None
        self._note(new.digest, diff_id, size)
        return new

    def _as_is(self, desc: Descriptor, diff_id: str) -> Descriptor:
        new = desc.replace(media_type=mt.convert_layer_media_type(desc.media_type, self.format))
        if self.format == "docker":
            new = new.replace(annotations={})
        if self.dst.has_blob(desc.digest):
            self._check_present(desc, diff_id)
            return new
        put_unpacked = getattr(self.dst, "put_unpacked", None)
        one_pass = getattr(self.dst, "snaps", None) is not None or getattr(
            self.dst, "check_layers", False
        )
        if put_unpacked is not None and one_pass:
            with self._open_layer(desc) as blob:  # stored and unpacked in the same pass
                applied = put_unpacked(new, blob)
            if str(applied.diff_id) != diff_id:
                raise _diff_mismatch(desc, diff_id, str(applied.diff_id))
            self._note(desc.digest, diff_id, applied.size)
            return new
        stream = self._open_layer(desc)
        if not self.verify:
            with stream:
                self.dst.put_blob(new, stream)
            return new
        tee = DiffIdTee(stream, desc.media_type)
        with io.BufferedReader(tee, CHUNK) as reader:
            self.dst.put_blob(new, reader)
        if tee.diff_id != diff_id:
            raise _diff_mismatch(desc, diff_id, tee.diff_id)
        self._note(desc.digest, diff_id, tee.uncompressed_size)
        return new

    def _check_present(self, desc: Descriptor, diff_id: str) -> None:
        """A layer blob the store holds is not copied, so its diff_id is not measured on
        the way: unless the store recorded it at this very chain, it is read back. Else an
        image claiming a held blob under another diff_id (a hostile cache entry or pull)
        would be registered with a layer that does not match its config."""
        if self.vouched is None or (desc.digest, diff_id) in self.vouched:
            return
        got = self.dst.stored_diff_id(desc)  # type: ignore[attr-defined]  # the store's
        if got != diff_id:
            raise _diff_mismatch(desc, diff_id, got)
        self.vouched.add((desc.digest, diff_id))

    def _recompressed(self, desc: Descriptor, diff_id: str, want: str) -> Descriptor:
        with tempfile.TemporaryFile(dir=self.tmp_dir) as spool:
            with self._open_layer(desc) as stream:
                res = recompress(stream, spool, want, self.level)
            if res.diff_id != diff_id:
                raise _diff_mismatch(desc, diff_id, res.diff_id)
            new = Descriptor(
                mt.layer_media_type(self.format, want), Digest.parse(res.digest), res.size
            )
            if not self.dst.has_blob(new.digest):
                spool.seek(0)
                self.dst.put_blob(new, spool)
        self._note(new.digest, diff_id, res.uncompressed_size)
        return new


def copy_image(
    src: Image,
    dst: ImageDestination | Store,
    names: Sequence[str] = (),
    *,
    image_format: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    verify: bool = True,
    tmp_dir: str | None = None,
    on_bytes: LayerBytes | None = None,
) -> CopyResult:
    """Copy ``src`` into ``dst`` (a destination, or a Store) and name it ``names`` there.

    ``image_format``: ``"oci"`` or ``"docker"`` (default: as the source);
    ``compression``: ``"gzip"``, ``"zstd"``, ``"none"`` (default: as the source).
    ``verify`` checks each copied layer's diff_id against the config.
    ``on_bytes(desc, n)`` hears how far each layer copied has been read.
    """
    if isinstance(dst, Store):
        dst = StoreDestination(dst)
    fmt = choices.ImageFormat.parse(image_format or ("docker" if src.manifest.is_docker else "oci"))
    compression = getattr(dst, "required_compression", None) or compression
    if compression is not None:
        compression = choices.Compression.parse(compression)
    config = src.config
    if len(config.diff_ids) != len(src.layers):
        raise InvalidArgument(
            f"image {src.manifest.config.digest} has {len(src.layers)} layers but "
            f"{len(config.diff_ids)} diff_ids in its config"
        )
    copier = _Copier(src, dst, fmt, compression, level=level, verify=verify, tmp_dir=tmp_dir,
                     on_bytes=on_bytes)  # fmt: skip
    layers = [
        copier.layer(d, diff_id) for d, diff_id in zip(src.layers, config.diff_ids, strict=True)
    ]
    old_config = src.manifest.config
    config_desc = Descriptor(mt.config_type_for(fmt), old_config.digest, old_config.size)
    if not dst.has_blob(config_desc.digest):
        with src.blobs.open_blob(config_desc.digest) as f:
            dst.put_blob(config_desc, f)
    same = (
        mt.manifest_type_for(fmt) == src.manifest.media_type
        and config_desc == old_config
        and tuple(layers) == src.manifest.layers
    )
    if same:
        manifest = src.manifest
    else:
        annotations = src.manifest.annotations if fmt == "oci" else None
        manifest = Manifest.build(mt.manifest_type_for(fmt), config_desc, layers, annotations)
    dst.put_manifest(manifest.raw, manifest.media_type, list(names))
    return CopyResult(manifest, getattr(dst, "record", None))
