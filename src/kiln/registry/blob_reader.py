"""A file-like reader over a streamed blob response.

Bytes are pulled from the HTTP stream as the caller reads; nothing is held
beyond one network chunk. A connection that breaks, or ends before the
announced length, raises :class:`kiln.errors.Unavailable` naming the offset
reached, so a caller can reopen with ``offset=`` (a ``Range`` request) when
``supports_range`` is true. :meth:`iter_chunks` hands the network's chunks on
as they come, without the copies ``read`` makes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kiln.errors import Unavailable
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.util.pace import Pace

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class BlobReader(io.RawIOBase):
    def __init__(
        self,
        response: httpx.Response,
        what: str,
        offset: int = 0,
        skip: int = 0,
        pace: Pace | None = None,
    ):
        super().__init__()
        self._pace = pace
        self._received = 0  # bytes from the network in this response (pace)
        self._response = response
        self._what = what
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._buffer = b""
        self._skip = skip  # server ignored our Range: drop the bytes we already have
        self.offset = offset  # absolute position in the blob
        length = response.headers.get("content-length")
        self._remaining = int(length) - skip if length and length.isdigit() else None
        self.size = offset + self._remaining if self._remaining is not None else None
        self.supports_range = (
            response.status_code == 206 or response.headers.get("accept-ranges", "") == "bytes"
        )
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes | None:
        """The next chunk (maybe empty after skipping), or None at the end of the stream."""
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return None
        except (httpx.TransportError, httpx.StreamError) as exc:
            self.close()
            raise Unavailable(
                f"{self._what}: the connection broke after {self.offset} bytes "
                f"({type(exc).__name__}); retry the pull to resume"
            ) from None
        self._received += len(chunk)
        if self._pace is not None:
            try:
                self._pace.check(self._received)
            except Unavailable:
                self.close()
                raise
        if self._skip:
            drop = min(self._skip, len(chunk))
            chunk, self._skip = chunk[drop:], self._skip - drop
        return chunk

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        if self._done:
            return 0
        while not self._buffer:
            chunk = self._next_chunk()
            if chunk is None:
                self._finish()
                return 0
            self._buffer = chunk
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.offset += n
        if self._remaining is not None:
            self._remaining -= n
        return n

    def iter_chunks(self) -> Iterator[bytes]:
        """The rest of the blob as the network delivers it (the same checks as ``read``)."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            yield self._advance(data)
        while not self._done:
            chunk = self._next_chunk()
            if chunk is None:
                self._finish()
                return
            if chunk:
                yield self._advance(chunk)

    def _advance(self, data: bytes) -> bytes:
        self.offset += len(data)
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def _finish(self) -> None:
        self._done = True
        short = self._skip > 0 or (self._remaining is not None and self._remaining > 0)
        # the response is released at the end; the reader stays open, so that a read
        # after the end (a buffered reader asking again) gets b"", as from a file
        self._response.close()
        if short:
            self.close()
            raise Unavailable(
                f"{self._what}: the connection ended after {self.offset} of {self.size} bytes; "
                "retry the pull to resume"
            )

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()
