"""The two stream shapes kiln's byte pipelines pass around.

A pipeline stage needs only ``read`` from what it reads and ``write`` from what it
writes. Files fit, and so do kiln's own wrappers (hashing, decompressing,
read-ahead, tee); ``typing.BinaryIO`` promises far more than they offer.
"""

from __future__ import annotations

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
