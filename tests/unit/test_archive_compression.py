"""Compression detection, streaming decompression, determinism and the bomb guard."""

from __future__ import annotations

import array
import io
import os

import pytest
import zstandard

from kiln.archive.compression import (
    Compression,
    RatioGuard,
    default_max_ratio,
    detect,
    open_compressor,
    open_decompressed,
)
from kiln.archive.hashing import HashingReader, HashingWriter
from kiln.errors import InvalidArgument

DATA = os.urandom(200_000) + b"text " * 100_000


def compress(data: bytes, kind: Compression, level=None) -> bytes:
    out = io.BytesIO()
    with open_compressor(out, kind, level) as writer:
        writer.write(data)
    assert not out.closed
    return out.getvalue()


class Pipe(io.RawIOBase):
    """A non-seekable source handing out at most 3 bytes per read."""

    def __init__(self, data: bytes):
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, n=-1):
        chunk, self._data = self._data[:3], self._data[3:]
        return chunk


@pytest.mark.parametrize("kind", list(Compression))
def test_round_trip_and_detection(kind):
    blob = compress(DATA, kind)
    assert detect(blob[:6]) is kind
    reader = open_decompressed(Pipe(blob))
    assert reader.compression is kind
    assert reader.read() == DATA
    assert reader.compressed_bytes == len(blob)


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_compression_is_deterministic(kind):
    assert compress(DATA, kind) == compress(DATA, kind)


def test_gzip_header_has_no_mtime_or_name():
    blob = compress(b"x", Compression.GZIP)
    assert blob[3] == 0 and blob[4:8] == b"\0\0\0\0"


def test_zstd_multi_frame():
    frames = zstandard.ZstdCompressor().compress(b"a" * 1000) + zstandard.ZstdCompressor(
        write_checksum=True
    ).compress(b"b" * 1000)
    assert open_decompressed(io.BytesIO(frames)).read() == b"a" * 1000 + b"b" * 1000


def test_bomb_guard_and_env(monkeypatch):
    bomb = compress(bytes(64 << 20), Compression.ZSTD)
    with pytest.raises(InvalidArgument, match="beyond 1000:1"):
        open_decompressed(io.BytesIO(bomb)).read()
    assert len(open_decompressed(io.BytesIO(bomb), max_ratio=1e9).read()) == 64 << 20
    monkeypatch.setenv("KILN_MAX_DECOMPRESSION_RATIO", "5")
    assert default_max_ratio() == 5
    text = compress(b"abc" * 1_000_000, Compression.GZIP)
    with pytest.raises(InvalidArgument, match="beyond 5:1"):
        open_decompressed(io.BytesIO(text)).read()
    monkeypatch.setenv("KILN_MAX_DECOMPRESSION_RATIO", "lots")
    with pytest.raises(InvalidArgument, match="not a number"):
        default_max_ratio()
    RatioGuard(2.0).check(1, 1 << 20)  # the first MiB is always allowed


def test_bad_level():
    with pytest.raises(InvalidArgument, match="level"):
        open_compressor(io.BytesIO(), Compression.GZIP, 9)


def test_hashing_streams():
    out = io.BytesIO()
    writer = HashingWriter(out)
    writer.write(b"hello")
    assert writer.size == 5 and writer.digest.startswith("sha256:2cf24dba")
    reader = HashingReader(io.BytesIO(b"hello"))
    assert reader.read(2) == b"he" and reader.drain() == 3
    assert reader.digest == writer.digest and reader.size == 5


@pytest.mark.parametrize("kind", [Compression.NONE, Compression.GZIP])
def test_closed_reader_refuses_reads_like_a_file(kind):
    reader = open_decompressed(io.BytesIO(compress(b"hello", kind)))
    reader.close()
    with pytest.raises(ValueError, match="closed file"):
        reader.read(3)


def test_writers_count_bytes_of_any_buffer():
    words = array.array("I", [1, 2, 3])  # 3 items, 12 bytes
    out = io.BytesIO()
    hashing = HashingWriter(out)
    assert hashing.write(words) == 12 and hashing.size == 12
    assert open_compressor(io.BytesIO(), Compression.GZIP).write(words) == 12
    assert out.getvalue() == words.tobytes()
