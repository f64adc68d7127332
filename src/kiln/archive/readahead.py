"""Read a stream ahead on a second thread, so producing bytes overlaps consuming them.

Decompression (isal, zstd) and hashing/writing (hashlib, file writes) all release
the GIL, so on two cores inflating a layer on one thread while the other hashes and
writes it costs the slower of the two instead of their sum. Memory stays bounded:
at most ``depth`` chunks wait in the queue.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import TYPE_CHECKING

from kiln.archive.streams import ClosableReader

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20


class ReadAhead(io.RawIOBase):
    """A raw reader over ``inner`` (read only by the helper thread, in ``chunk`` pieces).

    An exception raised by ``inner`` is raised again by ``read`` here, in order.
    Closing stops the helper and closes ``inner``.
    """

    def __init__(self, inner: ClosableReader, chunk: int = CHUNK, depth: int = 4):
        self._inner = inner
        self._chunk = chunk
        # a chunk, the inner reader's exception, or None at the end
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, name="kiln-readahead", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(self._chunk)
                if not data:
                    break
                if not self._put(data):
                    return
            self._put(None)
        except BaseException as exc:  # handed to the reader
            self._put(exc)

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make ``_buf`` non-empty; False at the end of the stream."""
        if self._buf:
            return True
        if self._done:
            return False
        item = self._queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._buf = memoryview(item)
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._chunk), b""))
        if not size or not self._fill():
            return b""
        data = self._buf[:size]
        self._buf = self._buf[size:]
        whole = data.obj
        if isinstance(whole, bytes) and len(data) == len(whole):
            return whole  # the whole chunk: no copy
        return data.tobytes()

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        if not self._fill():
            return 0
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            self._inner.close()
        super().close()


__all__ = ["ReadAhead"]
