"""A failed layer leaves nothing behind in a long-running process.

The pull's unpack stage keeps the error its applier raised, and the error's traceback keeps
the frames that were reading the stage: a reference cycle. isal's gzip reader is invisible
to Python's cycle collector, so a cycle running through it was never freed, and ``kiln serve``
grew by about a megabyte (the frames, the decoder's C buffers) for every layer of every pull
whose client went away. A closed reader lets go of its source, which breaks the cycle.
"""

from __future__ import annotations

import gc
import io
import os
import tarfile
import weakref

import pytest

from kiln.archive.applier import apply_layer
from kiln.archive.compression import Compression, open_compressor, open_decompressed
from kiln.errors import InvalidArgument


class _KeepsItsError(io.RawIOBase):
    """Hands out ``data``; its owner keeps what the reader of it raised (as the stage does)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        return self._data.readinto(buf)


def _truncated_layer(kind: Compression) -> bytes:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        data = os.urandom(1 << 20)
        info = tarfile.TarInfo("big")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with open_compressor(out, kind) as writer:
        writer.write(tar.getvalue())
    return out.getvalue()[: len(out.getvalue()) // 2]


def _applied(kind: Compression, tree: str) -> weakref.ref:
    source = _KeepsItsError(_truncated_layer(kind))
    try:
        apply_layer(source, tree)
    except InvalidArgument as exc:
        source.error = exc
    assert source.error is not None
    return weakref.ref(source)


def _read(kind: Compression) -> weakref.ref:
    source = _KeepsItsError(_truncated_layer(kind))
    with open_decompressed(source, kind) as reader:
        try:
            while reader.read(1 << 16):
                pass
        except InvalidArgument as exc:
            source.error = exc
        assert reader.compressed_bytes > 0
    assert source.error is not None
    return weakref.ref(source)


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_a_truncated_layer_that_failed_to_apply_is_freed(tmp_path, kind):
    (tmp_path / "tree").mkdir()
    source = _applied(kind, str(tmp_path / "tree"))
    gc.collect()
    assert source() is None


def test_a_closed_gzip_reader_lets_go_of_its_source():
    source = _read(Compression.GZIP)  # zstd's reader lets go of it when closed
    gc.collect()
    assert source() is None
