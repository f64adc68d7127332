"""ReadAhead: the bytes in order, the source's errors raised to the reader, a clean stop."""

from __future__ import annotations

import io
import os
import threading

import pytest

from kiln.archive.readahead import ReadAhead


def test_bytes_arrive_whole_and_in_order_whatever_the_read_sizes():
    data = os.urandom(300_001)
    with ReadAhead(io.BytesIO(data), chunk=4096, depth=2) as r:
        parts = [r.read(1000), r.read(5000)]
        buf = bytearray(777)
        n = r.readinto(buf)
        parts.append(bytes(buf[:n]))
        parts.append(r.read())
        assert r.read(10) == b""
    assert b"".join(parts) == data


class _Failing(io.RawIOBase):
    def __init__(self):
        self.calls = 0

    def readable(self):
        return True

    def readinto(self, buf):
        self.calls += 1
        if self.calls > 2:
            raise ValueError("disk on fire")
        buf[:3] = b"abc"
        return 3


def test_an_error_of_the_source_reaches_the_reader_after_the_bytes_before_it():
    with ReadAhead(_Failing(), chunk=3) as r:
        assert r.read(3) == b"abc"
        assert r.read(3) == b"abc"
        with pytest.raises(ValueError, match="disk on fire"):
            r.read(3)


def test_closing_early_stops_the_helper_and_closes_the_source():
    src = io.BytesIO(os.urandom(1 << 20))
    before = set(threading.enumerate())
    r = ReadAhead(src, chunk=1024, depth=2)
    assert len(r.read(10)) == 10
    [helper] = [t for t in threading.enumerate() if t not in before and t.name == "kiln-readahead"]
    r.close()
    assert src.closed
    # this reader's own thread, not the process's thread count: threads of other tests'
    # servers come and go meanwhile in a full run
    assert not helper.is_alive()
