"""Run a synchronous use case in a worker thread and stream what it produces.

The use case receives an event sink (and, for byte streams, a writer). Each
event is rendered to zero or more JSON objects sent as one line each. The
worker hands items over through a bounded queue, so a slow client slows the
work instead of filling memory. When the client goes away the cancel flag is
set; the next event or write the worker makes raises :class:`Cancelled`, and
the worker's own ``finally`` blocks clean up. The response waits for the
worker to finish, so nothing outlives the request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import Receive, Scope, Send

from kiln.errors import Cancelled
from kiln.ops.events import Event

from .errors import error_body, error_response

log = logging.getLogger("kiln.api")

QUEUE_ITEMS = 64
CHUNK_BYTES = 256 << 10  # a byte stream's chunks: at most 16 MiB queued
_EVENT, _BYTES, _DONE, _ERROR = "event", "bytes", "done", "error"

Rendered = Iterable[dict[str, Any]]


class Handoff:
    """The worker's side: events and bytes go to the response, with backpressure."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, cancel: threading.Event
    ):
        self._loop, self._queue, self.cancel = loop, queue, cancel

    def put(self, kind: str, item: Any) -> None:
        if self.cancel.is_set():
            raise Cancelled("the client disconnected; the operation was cancelled")
        fut = asyncio.run_coroutine_threadsafe(self._queue.put((kind, item)), self._loop)
        while True:
            try:
                fut.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                if self.cancel.is_set():
                    fut.cancel()
                    raise Cancelled(
                        "the client disconnected; the operation was cancelled"
                    ) from None

    # EventSink
    def emit(self, event: Event) -> None:
        self.put(_EVENT, event)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the client disconnected; the operation was cancelled")


class StreamWriter:
    """A binary file-like whose writes become response body chunks.

    Small writes (tar headers, padding) are gathered and large ones cut, so each
    chunk is at most ``chunk`` bytes: the queue then holds at most
    ``QUEUE_ITEMS * chunk`` bytes, however fast the writer and slow the client.
    ``flush()`` sends what is gathered; the work must call it when done (bytes
    not flushed when the work fails are dropped with it).
    """

    def __init__(self, handoff: Handoff, chunk: int = CHUNK_BYTES):
        self._h = handoff
        self._chunk = chunk
        self._buf = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= self._chunk:
            self._h.put(_BYTES, bytes(self._buf[: self._chunk]))
            del self._buf[: self._chunk]
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if self._buf:
            self._h.put(_BYTES, bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:
        self.closed = True


def json_line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class StreamedOp:
    """An ASGI response running ``work(handoff)`` in a thread.

    ``render_event(event)`` and ``render_result(result)`` give the JSON objects
    to send; ``render_error(exc)`` the object sent when the work fails after the
    response began (the status is already 200 by then, as with dockerd).
    ``defer_start``: a JSON stream too starts only with its first item, so work that fails
    before it (a build whose Dockerfile cannot be read) answers with an error status and
    body, as dockerd's build does ("do not write a 200 when nothing was written yet").

    A byte stream (any media type but JSON) starts its response only with its
    first bytes, so work that fails before them answers with an error status and
    body, as dockerd does for ``docker save``; one that fails later ends the
    connection without the last chunk, so the client sees a truncated transfer
    instead of a complete-looking one.
    """

    def __init__(
        self,
        work: Callable[[Handoff], Any],
        render_event: Callable[[Event], Rendered] = lambda e: (),
        render_result: Callable[[Any], Rendered] = lambda r: (),
        render_error: Callable[[BaseException], Rendered] | None = None,
        media_type: str = "application/json",
        headers: dict[str, str] | None = None,
        libpod: bool = False,
        defer_start: bool = False,
    ):
        self.work = work
        self.defer_start = defer_start
        self.render_event = render_event
        self.render_result = render_result
        self.render_error = render_error or (lambda exc: [docker_stream_error(exc, libpod)])
        self.media_type = media_type
        self.headers = headers or {}
        self.libpod = libpod
        self.binary = not media_type.endswith("json")

    def _run(self, handoff: Handoff, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        try:
            result = self.work(handoff)
        except BaseException as exc:  # noqa: BLE001 - reported to the client
            if not isinstance(exc, Cancelled) and not hasattr(exc, "http_status"):
                log.error("streamed operation failed", exc_info=exc)
            final = (_ERROR, exc)
        else:
            final = (_DONE, result)
        if not handoff.cancel.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(final), loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_ITEMS)
        cancel = threading.Event()
        handoff = Handoff(loop, queue, cancel)
        worker = loop.run_in_executor(None, self._run, handoff, loop, queue)
        listener = asyncio.ensure_future(_listen_for_disconnect(receive, cancel))
        headers = [(b"content-type", self.media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        started = finished = False
        try:
            if not self.binary and not self.defer_start:
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                started = True
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, listener}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    break  # the client went away
                kind, item = getter.result()
                if kind == _ERROR and not started:  # binary or deferred: an error status
                    await error_response(item, self.libpod)(scope, receive, send)
                    finished = True
                    break
                if self.binary and kind == _ERROR:
                    finished = True  # a started byte stream ends without its last chunk
                    break
                if self.binary and kind == _EVENT:
                    continue  # a byte stream carries no progress
                if not started:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    started = True
                if kind == _BYTES:
                    await send({"type": "http.response.body", "body": item, "more_body": True})
                    continue
                if kind == _EVENT:
                    objs = self.render_event(item)
                elif kind == _DONE:
                    objs = self.render_result(item)
                else:
                    objs = self.render_error(item)
                body = b"".join(json_line(o) for o in objs)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if kind in (_DONE, _ERROR):
                    break
            if started and not finished and not cancel.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client disconnected mid-send
        finally:
            cancel.set()
            listener.cancel()
            while not queue.empty():
                queue.get_nowait()
            try:
                await asyncio.shield(worker)
            except BaseException:  # noqa: BLE001 - the worker reported its own errors
                pass


async def _listen_for_disconnect(receive: Receive, cancel: threading.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


def docker_stream_error(exc: BaseException, libpod: bool = False) -> dict[str, Any]:
    """The object dockerd sends when a streamed operation fails midway."""
    message = error_body(exc, libpod)["message"]
    return {"error": message, "errorDetail": {"message": message}}


__all__ = ["Handoff", "StreamWriter", "StreamedOp", "docker_stream_error", "json_line"]
