"""Layer byte streams: diff_id while passing bytes through, and one-pass recompression."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from kiln.archive.compression import (
    CHUNK,
    Compression,
    open_decompressed,
    zstandard_module,
)
from kiln.archive.gzip_slices import slice_compressor
from kiln.archive.hashing import HashingReader, HashingWriter
from kiln.archive.streams import ByteReader, ByteWriter, ClosableReader
from kiln.errors import InvalidArgument
from kiln.oci import media_types as mt
from kiln.oci.digest import Digester
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_gzip_zlib: ModuleType
try:  # isal's zlib inflates gzip about twice as fast; same results
    from isal import isal_zlib as _gzip_zlib
except ImportError:  # pragma: no cover
    _gzip_zlib = zlib


class _Decompressor(Protocol):
    """A zlib/isal or zstd decompress object."""

    def decompress(self, data: bytes, /) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


class Inflater:
    """Push-style decompression of concatenated gzip members or zstd frames."""

    def __init__(self, compression: str):
        self.compression = compression
        self._obj: _Decompressor | None = None
        self.finished = compression == "none"

    def _new(self) -> _Decompressor:
        if self.compression == "gzip":
            inflate: _Decompressor = _gzip_zlib.decompressobj(31)  # isal's or zlib's
            return inflate
        zstd: _Decompressor = zstandard_module().ZstdDecompressor().decompressobj()
        return zstd

    def feed(self, data: bytes) -> list[bytes]:
        if self.compression == "none":
            return [data]
        out = []
        while data:
            obj = self._obj
            if obj is None:
                obj = self._obj = self._new()
                self.finished = False
            try:
                out.append(obj.decompress(data))
            except Exception as exc:  # zlib.error, isal's IsalError, ZstdError
                raise InvalidArgument(
                    f"{self.compression} layer data is corrupt ({exc}); the blob is damaged"
                ) from None
            if obj.eof:
                data = obj.unused_data
                self._obj = None
                self.finished = True
            else:
                data = b""
        return out


class DiffIdTee(io.RawIOBase):
    """Passes a (compressed) layer blob through unchanged while hashing its uncompressed tar.

    After EOF, ``diff_id`` and ``uncompressed_size`` describe the tar inside.
    """

    def __init__(self, inner: ClosableReader, media_type: str):
        self._inner = inner
        self._inflater = Inflater(mt.layer_compression(media_type))
        self._hash = Digester()
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            for piece in self._inflater.feed(bytes(data)):
                self._hash.update(piece)
        elif not self._eof:
            self._eof = True
            if not self._inflater.finished:
                raise InvalidArgument(
                    f"{self._inflater.compression} layer data is truncated; the blob is damaged"
                )
        return n

    @property
    def diff_id(self) -> str:
        return str(self._hash.digest())

    @property
    def uncompressed_size(self) -> int:
        return self._hash.size

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


@dataclass(frozen=True)
class Recompressed:
    """A layer blob written again with another compression."""

    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    compression: str


class SliceTee(io.RawIOBase):
    """Reads from ``inner`` and passes every byte on to ``writer`` in fixed CHUNK slices;
    ``finish`` reads and passes on what the reader left."""

    def __init__(self, inner: ByteReader, writer: ByteWriter):
        self._inner = inner
        self._writer = writer
        self._buf = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        self._buf += data
        while len(self._buf) >= CHUNK:
            self._writer.write(bytes(self._buf[:CHUNK]))
            del self._buf[:CHUNK]
        return n

    def finish(self) -> None:
        while self.readinto(bytearray(CHUNK)):
            pass
        if self._buf:
            self._writer.write(bytes(self._buf))
            self._buf.clear()


def recompress(
    stream: ByteReader,
    out: ByteWriter,
    compression: str,
    level: int | None = None,
    check: Callable[[ByteReader], object] | None = None,
) -> Recompressed:
    """Decompress ``stream`` (any format), hash the tar, compress to ``out``: one pass.

    ``check`` (e.g. :func:`kiln.archive.tar_check.check_tar`) reads the tar bytes
    as they pass and raises to refuse them.
    """
    with open_decompressed(stream) as plain:
        tar = HashingReader(plain)
        sink = HashingWriter(out)
        writer = slice_compressor(sink, Compression(compression), level)
        # fixed-size slices: the compressed bytes depend only on the tar bytes
        if check is None:
            while chunk := read_full(tar, CHUNK):
                writer.write(chunk)
        else:
            tee = SliceTee(tar, writer)
            check(tee)
            tee.finish()
        writer.close()
    return Recompressed(sink.digest, sink.size, tar.digest, tar.size, compression)


def read_full(stream: ByteReader, size: int) -> bytes:
    """Exactly ``size`` bytes unless the stream ends first."""
    parts = []
    want = size
    while want:
        data = stream.read(want)
        if not data:
            break
        parts.append(data)
        want -= len(data)
    return b"".join(parts)


def drain(stream: ClosableReader) -> int:
    total = 0
    try:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
    finally:
        stream.close()
    return total
