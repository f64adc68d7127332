"""Compressed streams: detect, decompress (with a bomb guard) and compress.

Readers stream: nothing is read whole, magic bytes are peeked without losing
them (works on pipes), and every decoder is bounded per ``read`` so a bomb is
caught by :class:`RatioGuard` before it fills memory. Writers are
deterministic: gzip has mtime 0 and no file name, zstd is single-threaded
without content size, so the same bytes in give the same bytes out.
"""

from __future__ import annotations

import bz2
import functools
import io
import lzma
import os
import zlib
from collections.abc import Callable
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from kiln.archive.streams import ByteReader, ByteWriter
from kiln.errors import InvalidArgument

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

CHUNK = 1 << 20
DEFAULT_MAX_RATIO = 1000.0
RATIO_ENV = "KILN_MAX_DECOMPRESSION_RATIO"


class Compression(str, Enum):  # noqa: UP042 - the agreed public shape
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def detect(head: bytes) -> Compression:
    """The compression of a stream from its first bytes (6 are enough)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def default_max_ratio() -> float:
    """The bomb guard ratio: ``$KILN_MAX_DECOMPRESSION_RATIO`` or 1000."""
    raw = os.environ.get(RATIO_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_RATIO
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(
            f"{RATIO_ENV}={raw!r} is not a number; set it to a ratio such as 1000"
        ) from None
    if value <= 0:
        raise InvalidArgument(f"{RATIO_ENV}={raw!r} must be a positive ratio such as 1000")
    return value


class _Decoder(Protocol):
    """What every decompressing file object (and the plain buffered reader) offers."""

    def readinto(self, buf: WriteableBuffer, /) -> int: ...

    def close(self) -> None: ...


class _Compressor(Protocol):
    """A zlib/isal, zstd, bz2 or lzma compression object."""

    def compress(self, data: memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


class RatioGuard:
    """Refuses output beyond ``max_ratio`` times the input, after ``allowance`` bytes."""

    def __init__(self, max_ratio: float | None = None, allowance: int = 1 << 20):
        self.max_ratio = default_max_ratio() if max_ratio is None else float(max_ratio)
        self.allowance = allowance

    def check(self, compressed: int, decompressed: int) -> None:
        if decompressed <= self.allowance:
            return
        if decompressed > self.max_ratio * max(compressed, 1):
            raise InvalidArgument(
                f"compressed data decompresses beyond {self.max_ratio:g}:1 "
                f"({compressed} bytes in, more than {decompressed} bytes out); refusing a "
                f"likely decompression bomb (raise {RATIO_ENV} if the data is trusted)"
            )


_ENDED = io.BytesIO()  # the end of every detached source


class _CountingSource(io.RawIOBase):
    """Raw reader over ``inner`` that first replays ``prefix`` and counts what it hands out."""

    def __init__(self, inner: ByteReader, prefix: bytes = b""):
        self._inner = inner
        self._prefix = prefix
        self.count = 0
        self.observer: Callable[[memoryview], None] | None = None  # sees every byte once

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
        else:
            data = self._inner.read(len(view))
            n = len(data) if data else 0
            view[:n] = data or b""
        if n and self.observer is not None:
            self.observer(view[:n])
        self.count += n
        return n

    def detach(self) -> None:
        """Let go of ``inner`` (the count stays): reads from now on see the end."""
        self._inner, self._prefix, self.observer = _ENDED, b"", None


def read_up_to(fileobj: ByteReader, size: int) -> bytes:
    """``size`` bytes from ``fileobj``, fewer only at its end (a short read is retried)."""
    head = b""
    while len(head) < size:
        more = fileobj.read(size - len(head))
        if not more:
            break
        head += more
    return head


@functools.cache
def _gzip_modules() -> tuple[ModuleType, ModuleType, int]:
    """The module gzip streams are read with, the zlib-compatible one they are written with,
    and its highest level: isal's (a declared dependency), else the standard library's.
    Imported on first use: a fully cached build reads and writes no gzip stream."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:  # pragma: no cover - exercised only without isal
        import gzip

        return gzip, zlib, 9
    return igzip, isal_zlib, 3


def zstandard_module() -> ModuleType:
    """The ``zstandard`` package, imported on first use: importing it costs ~5 ms of CPU, a
    noticeable part of a short command's start-up, and only zstd streams need it."""
    import zstandard

    return zstandard


_DATA_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, lzma.LZMAError)


class DecompressingReader(io.RawIOBase):
    """A readable stream of decompressed bytes with counters and a bomb guard.

    ``compressed_bytes`` counts input consumed, ``decompressed_bytes`` output
    produced. Corrupt, truncated or bomb-like input raises ``InvalidArgument``.
    Closing it does not close the underlying file object.
    """

    def __init__(
        self, fileobj: ByteReader, compression: Compression | None, max_ratio: float | None
    ):
        head = b"" if compression is not None else read_up_to(fileobj, 6)
        self.compression = detect(head) if compression is None else Compression(compression)
        self._source = _CountingSource(fileobj, head)
        self._zstd_frames: _ZstdFrameChecker | None = None
        self._data_errors = _DATA_ERRORS
        if self.compression is Compression.GZIP:
            self._data_errors += (getattr(deflate_module(), "error", zlib.error),)
        if self.compression is Compression.ZSTD:
            self._data_errors += (zstandard_module().ZstdError,)
            self._zstd_frames = _ZstdFrameChecker()
            self._source.observer = self._zstd_frames.feed
        self._decoder: _Decoder | None = self._open_decoder()
        self._guard = None if self.compression is Compression.NONE else RatioGuard(max_ratio)
        self.decompressed_bytes = 0

    @property
    def compressed_bytes(self) -> int:
        return self._source.count

    def _open_decoder(self) -> _Decoder:
        src = io.BufferedReader(self._source, CHUNK)
        kind = self.compression
        if kind is Compression.NONE:
            return src
        if kind is Compression.GZIP:
            gzip_module = _gzip_modules()[0]  # isal's or gzip's
            gzip_file: _Decoder = gzip_module.GzipFile(fileobj=src, mode="rb")
            return gzip_file
        if kind is Compression.ZSTD:
            dctx = zstandard_module().ZstdDecompressor()
            reader: _Decoder = dctx.stream_reader(
                src, read_size=CHUNK, read_across_frames=True, closefd=False
            )
            return reader
        if kind is Compression.BZIP2:
            return bz2.BZ2File(src, "rb")
        return lzma.LZMAFile(src, "rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        if self._decoder is None:
            raise ValueError("I/O operation on closed file.")
        try:
            n = self._decoder.readinto(buf)
        except self._data_errors as exc:
            raise self._corrupt(exc) from None
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise self._corrupt(exc) from None
        if n == 0 and self._zstd_frames is not None:
            self._zstd_frames.finish()
        self.decompressed_bytes += n
        if self._guard is not None:
            self._guard.check(self._source.count, self.decompressed_bytes)
        return n

    def _corrupt(self, exc: BaseException) -> InvalidArgument:
        return InvalidArgument(
            f"{self.compression.value} data is corrupt or truncated ({exc or type(exc).__name__}); "
            "the blob is damaged, fetch it again"
        )

    def close(self) -> None:
        """Closes the decoder and lets go of ``fileobj``. isal's gzip reader is not seen by
        Python's cycle collector, so a cycle through it (an exception that keeps the frames
        reading it, held by ``fileobj``'s owner) would never be freed, nor the decoder's C
        buffers: a pull whose client went away left ~1 MB per layer in ``kiln serve``."""
        if not self.closed:
            decoder, self._decoder = self._decoder, None
            if decoder is not None and self.compression is not Compression.NONE:
                decoder.close()
            self._source.detach()
        super().close()


class _ZstdFrameChecker:
    """Follows zstd frame structure to notice truncation (the decoder does not)."""

    def __init__(self) -> None:
        self._need = 4  # bytes wanted for the current state
        self._buf = b""
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, view: memoryview) -> None:
        data = bytes(view)
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._buf), len(data) - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                buf, self._buf = self._buf, b""
                self._advance(buf)

    def _advance(self, buf: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(buf, "little")
            if magic == 0xFD2FB528:
                self._state, self._need = "fhd", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = "skipsize", 4
            else:
                raise InvalidArgument("zstd data is corrupt (bad frame magic); fetch it again")
        elif state == "skipsize":
            self._skip = int.from_bytes(buf, "little")
            self._state, self._need = "magic", 4
        elif state == "fhd":
            fhd = buf[0]
            fcs_flag, single, self._checksum, did_flag = (
                fhd >> 6,
                fhd >> 5 & 1,
                bool(fhd & 4),
                fhd & 3,
            )
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[did_flag] + fcs
            self._state, self._need = "block", 3
        elif state == "block":
            header = int.from_bytes(buf, "little")
            last, btype, bsize = header & 1, header >> 1 & 3, header >> 3
            self._skip = 1 if btype == 1 else bsize
            if last:
                if self._checksum:
                    self._state, self._need = "checksum", 4
                else:
                    self._end_frame()
        elif state == "checksum":
            self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._state, self._need = "magic", 4

    def finish(self) -> None:
        if self._state != "magic" or self._buf or self._skip or not self.frames:
            raise InvalidArgument(
                "zstd data is truncated (the stream ends inside a frame); fetch it again"
            )


def open_decompressed(
    fileobj: ByteReader,
    compression: Compression | None = None,
    *,
    max_ratio: float | None = None,
) -> DecompressingReader:
    """A streaming reader of ``fileobj``'s decompressed bytes; detects the format if None.

    ``max_ratio`` bounds output/input (default: ``$KILN_MAX_DECOMPRESSION_RATIO``
    or 1000; the first MiB of output is always allowed).
    """
    return DecompressingReader(fileobj, compression, max_ratio)


class CompressingWriter(io.RawIOBase):
    """A writable stream compressing into ``out``; ``close`` flushes but keeps ``out`` open."""

    def __init__(self, out: ByteWriter, compression: Compression, level: int | None):
        self.compression = Compression(compression)
        self._out = out
        self._obj = _compressor(self.compression, level)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        if self._obj is None:
            self._out.write(view)
        else:
            chunk = self._obj.compress(view)
            if chunk:
                self._out.write(chunk)
        return view.nbytes

    def close(self) -> None:
        if not self.closed:
            if self._obj is not None:
                tail = self._obj.flush()
                if tail:
                    self._out.write(tail)
            self._out.flush()
        super().close()


def deflate_module() -> ModuleType:
    """The zlib-compatible module gzip streams are written with: isal's, or zlib."""
    return _gzip_modules()[1]


def gzip_level(level: int | None) -> int:
    """``level`` checked (None: the default, 1)."""
    level = 1 if level is None else level
    highest = _gzip_modules()[2]
    if not 0 <= level <= highest:
        raise InvalidArgument(f"gzip level {level} is out of range 0-{highest}")
    return level


def _compressor(kind: Compression, level: int | None) -> _Compressor | None:
    if kind is Compression.NONE:
        return None
    if kind is Compression.GZIP:
        level = gzip_level(level)
        # wbits 31: a gzip member with mtime 0, no name, fixed OS byte — deterministic.
        zlib_like = deflate_module()
        deflate: _Compressor = zlib_like.compressobj(level, zlib_like.DEFLATED, 31)
        return deflate
    if kind is Compression.ZSTD:
        level = 3 if level is None else level
        if not -7 <= level <= 22:
            raise InvalidArgument(f"zstd level {level} is out of range -7-22")
        zstandard = zstandard_module()
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=0, write_content_size=False, write_checksum=True
        )
        zstd: _Compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        return zstd
    if kind is Compression.BZIP2:
        return bz2.BZ2Compressor(9 if level is None else level)
    return lzma.LZMACompressor(preset=6 if level is None else level)


def open_compressor(
    out: ByteWriter, compression: Compression, level: int | None = None
) -> CompressingWriter:
    """A writable stream compressing into ``out`` (gzip default level 1, zstd 3)."""
    return CompressingWriter(out, compression, level)


__all__ = [
    "CHUNK",
    "Compression",
    "CompressingWriter",
    "DecompressingReader",
    "RatioGuard",
    "default_max_ratio",
    "deflate_module",
    "detect",
    "gzip_level",
    "open_compressor",
    "open_decompressed",
    "read_up_to",
]
