"""The two stream shapes kiln's byte pipelines pass around.

A pipeline stage needs only ``read`` from what it reads and ``write`` from what it
writes. Files fit, and so do kiln's own wrappers (hashing, decompressing,
read-ahead, tee); ``typing.BinaryIO`` promises far more than they offer.
``CountedWrites`` is a writer telling how much went through it (progress).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ByteReader(Protocol):
    """Anything kiln reads bytes from: ``read(n)`` returns at most n bytes, b"" at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


class ClosableReader(ByteReader, Protocol):
    """A reader that a wrapper owns and closes with itself."""

    def close(self) -> None: ...


class ByteWriter(Protocol):
    """Anything kiln writes bytes to."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...


class CountedWrites:
    """``out``, telling ``on_write`` the bytes written so far after every write."""

    def __init__(self, out: ByteWriter, on_write: Callable[[int], None]) -> None:
        self._out, self._on_write, self.written = out, on_write, 0

    def write(self, data: bytes | memoryview, /) -> int:
        n = self._out.write(data)
        self.written += len(data) if n is None else n
        self._on_write(self.written)
        return len(data) if n is None else n

    def flush(self) -> None:
        self._out.flush()
