"""Streams that hash and count the bytes passing through them.

``HashingWriter`` sits in front of a sink, ``HashingReader`` behind a source;
both expose ``digest`` ("sha256:<hex>") and ``size`` (bytes seen). Neither
closes the stream it wraps. A sink that hashes what it is given itself (a store
ingest does, to verify) is a ``HashingSink``: writers use its digest instead of
hashing the same bytes a second time.
"""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from kiln.archive.streams import ByteReader, ByteWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


@runtime_checkable
class HashingSink(Protocol):
    """A writable sink that hashes and counts everything written to it."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...


class HashingWriter(io.RawIOBase):
    """Writes through to ``out`` while hashing and counting."""

    def __init__(self, out: ByteWriter | None, algorithm: str = "sha256"):
        self._out = out
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self.size += view.nbytes
        if self._out is not None:
            self._out.write(view)
        return view.nbytes

    def flush(self) -> None:
        if self._out is not None and not self.closed:
            self._out.flush()

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"


class HashingReader(io.RawIOBase):
    """Reads from ``inp`` while hashing and counting."""

    def __init__(self, inp: ByteReader, algorithm: str = "sha256"):
        self._inp = inp
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        readinto = getattr(self._inp, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._inp.read(len(view))
            n = len(data)
            view[:n] = data
        if n:
            self._hash.update(view[:n])
            self.size += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        data = self._inp.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def drain(self, chunk: int = 1 << 20) -> int:
        """Read to the end (hashing everything); returns the bytes drained."""
        total = 0
        buf = bytearray(chunk)
        while n := self.readinto(buf):
            total += n
        return total

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"


__all__ = ["HashingReader", "HashingSink", "HashingWriter"]
