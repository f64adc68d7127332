"""The layer writer's worker thread changes no byte: slices arrive whole and in order,
a large layer compresses to what a serial writer produces, and errors on either side
stop the worker and reach the caller."""

from __future__ import annotations

import io
import os
import threading

import pytest

from kiln.archive.compression import CHUNK, Compression
from kiln.archive.gzip_slices import SliceGzip
from kiln.archive.pipeline import SlicePipeline
from kiln.archive.tar_writer import TarEntry, write_layer
from kiln.errors import Conflict, InvalidArgument


def test_slices_are_cut_as_a_serial_writer_cuts_them():
    got: list[bytes] = []
    pipe = SlicePipeline(lambda v: got.append(bytes(v)), chunk=10, depth=2)
    data = os.urandom(95)
    for i in range(0, 95, 7):  # writes that straddle slice boundaries
        pipe.write(data[i : i + 7])
    pipe.close()
    assert [len(g) for g in got] == [10] * 9 + [5]
    assert b"".join(got) == data


def test_a_short_stream_needs_no_thread():
    seen = []
    pipe = SlicePipeline(lambda v: seen.append(threading.current_thread()), chunk=100)
    pipe.write(b"x" * 99)
    pipe.close()
    assert seen == [threading.current_thread()]


def test_an_error_in_the_worker_reaches_the_writer():
    def consume(view):
        raise OSError(28, "No space left on device")

    pipe = SlicePipeline(consume, chunk=4, depth=1)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):
            pipe.write(b"abcd")
        pipe.close()
    pipe.abort()  # idempotent after the failure; the worker is gone
    assert not [t for t in threading.enumerate() if t.name == "kiln-layer-writer"]


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kiln-layer-writer" and t.is_alive()]


def test_a_worker_error_found_at_close_still_stops_the_worker():
    """A full disk while the last slices are written: close raises the error and the worker
    is gone (it used to wait for a slice forever, and the process hung at exit)."""
    failed = threading.Event()

    def consume(view: memoryview) -> None:
        failed.set()
        raise OSError(28, "No space left on device")

    pipe = SlicePipeline(consume, chunk=10, depth=2)
    pipe.write(b"x" * 10)  # one whole slice: the worker starts and fails on it
    assert failed.wait(10)
    pipe.write(b"y" * 5)  # a short last slice, handed over only by close
    with pytest.raises(OSError, match="No space left"):
        pipe.close()
    assert _writers() == []


def test_large_layer_compresses_to_the_serial_bytes(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * CHUNK + 12345))
    entries = [TarEntry("big", "file", source=str(big), size=big.stat().st_size)]
    tar = io.BytesIO()
    write_layer(entries, tar, compression=Compression.NONE, timestamp=0)
    gz = io.BytesIO()
    result = write_layer(entries, gz, compression=Compression.GZIP, timestamp=0)
    serial = io.BytesIO()
    comp = SliceGzip(serial, 1)  # the layer writer's gzip, given its slices in one thread
    raw = tar.getvalue()
    for i in range(0, len(raw), CHUNK):
        comp.write(raw[i : i + CHUNK])
    comp.close()
    assert gz.getvalue() == serial.getvalue()
    assert result.size == len(serial.getvalue())


def test_a_file_shrinking_mid_layer_stops_the_worker(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(2 * CHUNK))
    entries = [TarEntry("big", "file", source=str(big), size=5 * CHUNK)]  # claims more
    with pytest.raises(Conflict, match="shrank"):
        write_layer(entries, io.BytesIO(), compression=Compression.GZIP)
    assert not [t for t in threading.enumerate() if t.name == "kiln-layer-writer"]


@pytest.mark.parametrize("size", [100, 2 * CHUNK], ids=["small", "big"])
def test_a_copy_source_shrinking_while_read_reads_as_changed(tmp_path, size):
    """A COPY source (listed with ``expect``) that ends before its listed size gets the one
    message (and error class) of every other change of a copy source."""
    src = tmp_path / "f"
    src.write_bytes(os.urandom(size))
    st = os.stat(src)
    # as listed before it shrank: the open file still matches, its bytes end early
    expect = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    entries = [TarEntry("f", "file", source=str(src), size=size + 1000, expect=expect)]
    with pytest.raises(InvalidArgument, match="changed while it was being copied \\(it shrank\\)"):
        write_layer(entries, io.BytesIO(), compression=Compression.NONE)


def test_bytes_read_into_the_slice_are_cut_as_written_ones():
    """``space``/``advance`` (a file read straight into the slice being filled) give the
    slices ``write`` gives for the same bytes, wherever they start and stop."""
    data = os.urandom(95)
    written: list[bytes] = []
    pipe = SlicePipeline(lambda v: written.append(bytes(v)), chunk=10, depth=2)
    pipe.write(data)
    pipe.close()
    read: list[bytes] = []
    pipe = SlicePipeline(lambda v: read.append(bytes(v)), chunk=10, depth=2)
    pos = 0
    for size in (3, 7, 12, 9, 30, 34):  # writes and reads, some straddling slices
        if size % 3:
            pipe.write(data[pos : pos + size])
            pos += size
            continue
        end = pos + size
        while pos < end:
            space = pipe.space(end - pos)
            assert 0 < len(space) <= 10
            space[:] = data[pos : pos + len(space)]
            pipe.advance(len(space))
            pos += len(space)
    pipe.close()
    assert pos == 95
    assert read == written
