"""A layer's gzip stream, written slice by slice, that stores what would not shrink.

Deflate at isal's fastest level still costs ~1 s of CPU a GiB on data that does not
compress (random bytes, media, archives): the largest share of a big COPY, for output a
little larger than its input. So each slice of the layer's tar stream (the writer cuts
it into fixed 1 MiB slices, ``archive.pipeline``) is first tested: four 4 KiB samples
of it (at 1/8, 3/8, 5/8 and 7/8 of it) are compressed alone, and if none of them shrinks,
the slice is written as deflate stored blocks (a copy and a CRC: ~0.1 s a GiB) after a
full flush of the compressor (which aligns the stream and forgets its window, so no
later match reaches into the stored bytes). Every other slice is compressed as before.

Deterministic: the choice and the bytes depend only on the slices (so only on the tar
bytes) and on the compressor's own output, as before. A stream in which no slice is
stored is the very stream isal's gzip ``compressobj`` (wbits 31) writes, byte for byte:
the same 10-byte header (mtime 0, no name, OS 255), the same raw deflate body, the same
CRC-32 and size trailer; layers of compressible files keep their digests. A layer that
holds incompressible data gets a different blob (and digest) than kiln wrote before
this (its diff_id, the tar's digest, is the same). Any gzip reader reads both.

A new layer (``archive.tar_writer``) and an imported or recompressed one
(``image.layers.recompress``) both go through ``slice_compressor``: the same tar gives
the same blob either way.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol

from kiln.archive.compression import Compression, deflate_module, gzip_level, open_compressor
from kiln.archive.streams import ByteWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["SliceCompressor", "SliceGzip", "slice_compressor", "stores_slice"]

#: what a gzip compressobj with wbits 31 writes first: magic, deflate, no flags, mtime 0,
#: no extra flags, OS 255 (unknown)
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_SAMPLE = 4096
_SAMPLES = 4
_MIN_STORED = 64 << 10
_STORED_MAX = 0xFFFF  # the most one stored block holds


def stores_slice(data: memoryview, level: int) -> bool:
    """Whether ``data`` is stored, not compressed: none of its samples shrinks (they are
    taken away from the slice's ends, where a file's tar header may fall). A slice
    shorter than 64 KiB (a layer's last) is always compressed."""
    n = len(data)
    if n < _MIN_STORED:
        return False
    compress = deflate_module().compress
    for i in range(_SAMPLES):
        start = n * (2 * i + 1) // (2 * _SAMPLES)
        if len(compress(data[start : start + _SAMPLE], level)) < _SAMPLE:
            return False
    return True


def _stored_blocks(data: memoryview) -> bytearray:
    """``data`` as non-final deflate stored blocks (the stream is byte-aligned here)."""
    n = len(data)
    blocks = -(-n // _STORED_MAX)
    out = bytearray(n + 5 * blocks)
    pos = 0
    for start in range(0, n, _STORED_MAX):
        piece = data[start : start + _STORED_MAX]
        size = len(piece)
        out[pos : pos + 5] = struct.pack("<BHH", 0, size, size ^ 0xFFFF)
        out[pos + 5 : pos + 5 + size] = piece
        pos += 5 + size
    return out


class SliceGzip:
    """A gzip stream into ``out``, given one slice per ``write`` (see the module docstring);
    ``close`` writes the end and flushes ``out`` (it does not close it)."""

    def __init__(self, out: ByteWriter, level: int):
        zlib = deflate_module()
        self._zlib = zlib
        self._out = out
        self._level = level
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._pending = False  # the compressor holds input not yet flushed
        self._crc = 0
        self._size = 0
        out.write(_HEADER)

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self._crc = self._zlib.crc32(view, self._crc)
        self._size += len(view)
        if stores_slice(view, self._level):
            if self._pending:
                self._out.write(self._deflate.flush(self._zlib.Z_FULL_FLUSH))
                self._pending = False
            self._out.write(memoryview(_stored_blocks(view)))
        elif len(view):
            chunk = self._deflate.compress(view)
            self._pending = True
            if chunk:
                self._out.write(chunk)
        return len(view)

    def flush(self) -> None:
        """Nothing: a deflate flush here would change the bytes (the stream ends at close)."""

    def close(self) -> None:
        self._out.write(self._deflate.flush())
        self._out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        self._out.flush()


class SliceCompressor(Protocol):
    """What a layer's compressor offers: ``write`` one slice, ``close`` (``out`` stays open)."""

    def write(self, data: ReadableBuffer, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def slice_compressor(
    out: ByteWriter, compression: Compression, level: int | None = None
) -> SliceCompressor:
    """The compressor of a layer's tar stream given in fixed slices (a new layer, an
    imported or recompressed one: the same tar gives the same blob either way):
    ``SliceGzip`` for gzip, the plain compressing stream otherwise."""
    if Compression(compression) is Compression.GZIP:
        return SliceGzip(out, gzip_level(level))
    return open_compressor(out, compression, level)
