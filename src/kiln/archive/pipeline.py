"""Hand fixed-size slices of a byte stream to a worker thread, in order.

A layer is written in one pass, but that pass has two CPU-heavy halves: hashing the tar
stream (its diff_id) and compressing it, hashing the result and writing it to disk.
``hashlib``, ``isal`` and ``zstandard`` release the GIL on large buffers, so the second
half runs on a worker thread while the first reads and hashes the next slices; on two
cores a large layer takes about the time of the slower half instead of both.

The stream is cut into ``chunk``-byte slices exactly as a serial writer cuts it (only the
last one shorter) and ``consume`` gets them in order, so its output is the same bytes. At
most ``depth`` slices wait for the worker: memory stays flat (``depth + 2`` buffers) and a
slow disk holds the reader back. A stream shorter than one slice never starts a thread.
An exception in ``consume`` is raised in the writer's thread at its next ``write`` or at
``close``; ``abort`` stops the worker without raising. ``close`` stops the worker even when
it raises.

``space``/``advance`` let the writer read straight into the slice being filled, without
copying the bytes once more (the same slices, so the same bytes downstream).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["SlicePipeline"]


class SlicePipeline:
    def __init__(self, consume: Callable[[memoryview], object], chunk: int, depth: int = 3):
        self._consume = consume
        self._chunk = chunk
        self._depth = depth
        self._full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue(maxsize=depth)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._made = 0
        self._cur: bytearray | None = None
        self._fill = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, data: ReadableBuffer) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self._cur is None:
                self._cur = self._buffer()
            n = min(self._chunk - self._fill, len(view))
            self._cur[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == self._chunk:
                self._send()

    def space(self, limit: int) -> memoryview:
        """Up to ``limit`` bytes of the slice being filled, to write into; ``advance(n)``
        then adds the first ``n`` of them to the stream (nothing else may come between)."""
        if self._cur is None:
            self._cur = self._buffer()
        end = min(self._chunk, self._fill + limit)
        return memoryview(self._cur)[self._fill : end]

    def advance(self, n: int) -> None:
        self._fill += n
        if self._fill == self._chunk:
            self._send()

    def close(self) -> None:
        """Hand over the last, shorter slice and wait for the worker to finish all."""
        try:
            if self._fill:
                if self._thread is None:
                    assert self._cur is not None
                    self._consume(memoryview(self._cur)[: self._fill])
                    self._cur, self._fill = None, 0
                else:
                    self._send()  # raises the worker's error (a full disk) before handing over
        finally:
            self._stop()  # whatever happened: a worker left waiting would hold the exit
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the worker, dropping what it has not consumed yet (no exception)."""
        if self._error is None:
            self._error = _Aborted()
        self._stop()

    # -- internals ----------------------------------------------------------------------

    def _buffer(self) -> bytearray:
        if self._made < self._depth + 2:
            self._made += 1
            return bytearray(self._chunk)
        return self._free.get()

    def _send(self) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            # a daemon: should a caller ever leave it waiting, the process still exits
            self._thread = threading.Thread(target=self._run, name="kiln-layer-writer", daemon=True)
            self._thread.start()
        assert self._cur is not None
        self._full.put((self._cur, self._fill))
        self._cur, self._fill = None, 0

    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            buf, n = item
            if self._error is None:
                try:
                    self._consume(memoryview(buf)[:n])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the writer
                    self._error = exc
            self._free.put(buf)

    def _stop(self) -> None:
        if self._thread is not None:
            self._full.put(None)
            self._thread.join()
            self._thread = None


class _Aborted(Exception):
    pass
