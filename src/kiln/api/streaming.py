"""Run a synchronous use case in a thread of its own and stream what it produces.

The use case receives an event sink (and, for byte streams, a writer). Each
event is rendered to zero or more JSON objects sent as one line each. The
worker hands items over through a bounded queue, so a slow client slows the
work instead of filling memory. When the client goes away the cancel flag is
set; the next event or write the worker makes raises :class:`Cancelled`, and
the worker's own ``finally`` blocks clean up. The response ends with the
worker's outcome (result or error), which it awaits directly, and waits for the
worker to finish, so nothing outlives the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kiln.errors import Cancelled, ProcessFailed
from kiln.ops.events import Event
from kiln.util.cancel import CancelFlag, cancelled_by, cancelled_error
from kiln.util.redact import redact

from . import heap
from .errors import error_body, error_response

log = logging.getLogger("kiln.api")

QUEUE_ITEMS = 64
CHUNK_BYTES = 256 << 10  # a byte stream's chunks
# a byte stream's items (at most 4 MiB queued): a client that reads nothing of a save
# held 16 MiB queued, with 64 items, for as long as it stayed
BYTE_QUEUE_ITEMS = 16
_EVENT, _BYTES, _DONE, _ERROR = "event", "bytes", "done", "error"

Rendered = Iterable[dict[str, Any]]

# the cancel flags of the streamed operations in flight, each with the loop serving it: a
# server that stops cancels those of its loop (:func:`cancel_in_flight`)
_IN_FLIGHT: set[tuple[asyncio.AbstractEventLoop, CancelFlag]] = set()


def cancel_in_flight(loop: asyncio.AbstractEventLoop) -> int:
    """Cancel the streamed operations ``loop`` serves, as a client's disconnect does (a RUN
    is killed, its mounts and leases go): the server stops, and a build or save would
    otherwise hold its stop up until the grace ran out, then be cut off mid-cleanup. Their
    responses end with the error. How many were cancelled."""
    flags = [flag for owner, flag in list(_IN_FLIGHT) if owner is loop]
    for flag in flags:
        flag.set_for("the server is stopping")
    return len(flags)


@contextlib.contextmanager
def in_flight(flag: CancelFlag) -> Iterator[None]:
    """Work of the running loop's that runs under ``flag`` outside a streamed response (a
    login, a registry lookup): a server that stops cancels it too (:func:`cancel_in_flight`)."""
    entry = (asyncio.get_running_loop(), flag)
    _IN_FLIGHT.add(entry)
    try:
        yield
    finally:
        _IN_FLIGHT.discard(entry)


class Handoff:
    """The worker's side: events and bytes go to the response, with backpressure.

    At most ``items`` are queued or on their way: the worker takes a slot for
    each (waiting while the response is that far behind) and the response gives it back
    when it takes the item. An item is handed to the loop without waiting for it to arrive
    there: a round trip to the loop per event held the work up for each of its lines."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue,
        cancel: threading.Event,
        items: int = QUEUE_ITEMS,
    ):
        self._loop, self._queue, self.cancel = loop, queue, cancel
        self._slots = threading.Semaphore(items)

    def put(self, kind: str, item: Any) -> None:
        self.check()
        while not self._slots.acquire(timeout=0.25):
            self.check()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, item))
        except RuntimeError:  # the loop is closed: nobody reads any more
            raise cancelled_error(self.cancel) from None

    def taken(self) -> None:
        """The response took an item off the queue: its slot is free again."""
        self._slots.release()

    # EventSink
    def emit(self, event: Event) -> None:
        self.put(_EVENT, event)

    def check(self) -> None:
        if self.cancel.is_set():
            raise cancelled_error(self.cancel)


class StreamWriter:
    """A binary file-like whose writes become response body chunks.

    Small writes (tar headers, padding) are gathered and large ones cut, so each
    chunk is at most ``chunk`` bytes: the queue then holds at most
    ``BYTE_QUEUE_ITEMS * chunk`` bytes, however fast the writer and slow the client.
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
    """One streamed JSON object; a ``user:password@`` in it (a reference being pulled,
    an ADD URL in a step line) goes out masked."""
    return (redact(json.dumps(obj, separators=(",", ":"))) + "\n").encode()


class StreamedOp:
    """An ASGI response running ``work(handoff)`` on a thread of its own.

    ``render_event(event)`` and ``render_result(result)`` give the JSON objects
    to send; ``render_error(exc)`` the object sent when the work fails after the
    response began (the status is already 200 by then, as with dockerd).

    The response always ends: it waits on the work's outcome itself, so whatever
    fails where (in the work, in a thread it started, after it set its cancel flag)
    the last thing sent is the result or the error. The response starts with the
    first output (an event that renders to nothing does not start it), so work that
    fails before writing anything answers with an error status and body, as dockerd
    does. A byte stream (any media type but JSON) starts
    only with its first bytes; one that fails later ends the connection without the
    last chunk, so the client sees a truncated transfer instead of a complete-looking
    one. ``preamble``: JSON objects sent before the work's first (dockerd's opening
    line of a push); the response then starts at once and every failure is in the
    stream. ``streams_failure(exc)``: whether a failure before any output is still sent
    in a 200 stream (dockerd's ``load`` always; a quiet build's once its steps began).
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
        preamble: Rendered = (),
        streams_failure: Callable[[BaseException], bool] | None = None,
    ):
        self.work = work
        self.render_event = render_event
        self.render_result = render_result
        self.render_error = render_error or (lambda exc: [docker_stream_error(exc, libpod)])
        self.media_type = media_type
        self.headers = headers or {}
        self.preamble = list(preamble)
        self.streams_failure = streams_failure or (lambda exc: _streamed_failure(exc, libpod))
        self.libpod = libpod
        self.binary = not media_type.endswith("json")

    def _run(self, handoff: Handoff) -> tuple[str, Any]:
        """The work's outcome, ``(_DONE, result)`` or ``(_ERROR, exc)``; it never raises."""
        try:
            with cancelled_by(handoff.cancel):  # a stalled registry's reads end with the client
                return _DONE, self.work(handoff)
        except BaseException as exc:  # noqa: BLE001 - reported to the client
            if not isinstance(exc, Cancelled) and not hasattr(exc, "http_status"):
                log.error("streamed operation failed", exc_info=exc)
            return _ERROR, _without_tracebacks(exc)

    def _start_worker(self, handoff: Handoff, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """Run the work on a thread of its own (a long build never waits for a pool slot nor
        holds one other requests need); the future resolves with its outcome, whatever the
        work did with its flags or queue: the response waits on this future, not on a
        message the work might not send."""
        outcome: asyncio.Future = loop.create_future()

        def resolve(final: tuple[str, Any]) -> None:
            if not outcome.done():
                outcome.set_result(final)

        def thread() -> None:
            final = self._run(handoff)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(resolve, final)
            heap.trim()  # what the build or transfer freed goes back to the system

        threading.Thread(target=thread, name="kiln-api-op", daemon=False).start()
        return outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()  # bounded by the handoff's slots
        cancel = CancelFlag()
        handoff = Handoff(loop, queue, cancel, BYTE_QUEUE_ITEMS if self.binary else QUEUE_ITEMS)
        in_flight = (loop, cancel)
        _IN_FLIGHT.add(in_flight)
        worker = self._start_worker(handoff, loop)
        listener = asyncio.ensure_future(listen_for_hang_up(receive, cancel))
        out = _Response(self, scope, receive, send)
        try:
            if self.preamble:
                await out.opening(self.preamble)
            while not out.ended:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, listener, worker}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    handoff.taken()
                    await out.items([getter.result(), *_waiting(queue, handoff)])
                    continue
                getter.cancel()
                if listener in done:
                    break  # the client went away: nobody to answer
                # the work ended: what it queued first, then its outcome
                if not out.ended:
                    await out.items(_waiting(queue, handoff))
                if not out.ended:
                    await out.item(*worker.result())
        except OSError:
            pass  # the client disconnected mid-send
        except asyncio.CancelledError:
            if not cancel.is_set():
                raise
            # a second signal forced the stop after this operation was cancelled: the worker
            # still cleans up (the process waits for its thread), nothing more to send
        finally:
            cancel.set()
            listener.cancel()
            _waiting(queue, handoff)  # dropped; a worker waiting for a slot sees the cancel
            try:
                await asyncio.shield(worker)
            except BaseException:  # noqa: BLE001 - the worker reported its own errors
                pass
            finally:
                _IN_FLIGHT.discard(in_flight)


class _Response:
    """One streamed response: items (events, bytes, the outcome) -> ASGI messages.

    The status line goes out with the first output, as dockerd writes its headers with
    its first write: work that fails before producing anything answers with an error status
    and body (docker-py and the docker CLI raise it), one that fails later ends its JSON
    stream with an error object. ``ended`` once the last message is sent.
    """

    def __init__(self, op: StreamedOp, scope: Scope, receive: Receive, send: Send):
        self.op, self.scope, self.receive, self.send = op, scope, receive, send
        self.started = self.ended = False

    async def _start(self) -> None:
        if not self.started:
            op = self.op
            headers = [(b"content-type", op.media_type.encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in op.headers.items()]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
            self.started = True

    async def _body(self, body: bytes, more: bool = True) -> None:
        if body or not more:
            await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def opening(self, objs: list[dict[str, Any]]) -> None:
        await self._start()
        await self._body(b"".join(json_line(o) for o in objs))

    async def items(self, items: list[tuple[str, Any]]) -> None:
        """Several items: the JSON lines of events in a row go out as one chunk."""
        lines: list[bytes] = []
        for kind, item in items:
            if self.ended:
                return
            if kind == _EVENT and not self.op.binary:
                lines += [json_line(o) for o in self.op.render_event(item)]
                continue
            if lines:
                await self._start()
                await self._body(b"".join(lines))
                lines = []
            await self.item(kind, item)
        if lines and not self.ended:
            await self._start()
            await self._body(b"".join(lines))

    async def item(self, kind: str, item: Any) -> None:
        op = self.op
        if kind == _ERROR and not self.started and not op.streams_failure(item):
            self.ended = True
            await error_response(item, op.libpod)(self.scope, self.receive, self.send)
            return
        if kind == _BYTES:
            body = item
        elif op.binary and kind == _EVENT:
            return  # a byte stream carries no progress
        elif op.binary and kind == _ERROR:
            self.ended = True  # a started byte stream ends without its last chunk
            return
        else:
            render = {_EVENT: op.render_event, _DONE: op.render_result, _ERROR: op.render_error}
            body = b"".join(json_line(o) for o in render[kind](item))
        if body or kind == _DONE:
            await self._start()
            await self._body(body)
        if kind in (_DONE, _ERROR):
            self.ended = True
            await self._body(b"", more=False)


def _without_tracebacks(exc: BaseException) -> BaseException:
    """``exc`` (and the errors it chains) without its frames, which the response does not
    need: the frames lead up to the worker thread's, which leads to the outcome that holds
    ``exc``, a cycle that kept the failed work's frames and buffers (3 MB for a cancelled
    save) until a full collection, which a busy server runs rarely: 100 clients closing a
    save early left 330 MB behind."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop()
        if link is not None and id(link) not in seen:
            seen.add(id(link))
            link.__traceback__ = None
            todo += [link.__cause__, link.__context__]
    return exc


def _waiting(queue: asyncio.Queue, handoff: Handoff) -> list[tuple[str, Any]]:
    """What the queue holds now, taken off it."""
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
        handoff.taken()
    return out


async def listen_for_hang_up(receive: Receive, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client disconnects (body chunks still coming are dropped)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


def _streamed_failure(exc: BaseException, libpod: bool) -> bool:
    """A failed RUN ends a Docker stream even before any output (a quiet build): dockerd
    answers 200 and the error with its exit code, which the docker CLI exits with; an
    error status made it exit 1 with 'Error response from daemon'."""
    return isinstance(exc, ProcessFailed) and not libpod


def docker_stream_error(exc: BaseException, libpod: bool = False) -> dict[str, Any]:
    """The object dockerd sends when a streamed operation fails midway; a failed RUN's exit
    code goes in ``errorDetail.code``, which the docker CLI exits with (``docker build``
    of ``RUN exit 3`` exits 3 against dockerd)."""
    message = error_body(exc, libpod)["message"]
    detail: dict[str, Any] = {"message": message}
    if isinstance(exc, ProcessFailed) and exc.exit_code > 0:
        detail = {"code": exc.exit_code, "message": message}
    return {"error": message, "errorDetail": detail}


__all__ = [
    "Handoff",
    "StreamWriter",
    "StreamedOp",
    "cancel_in_flight",
    "in_flight",
    "docker_stream_error",
    "json_line",
]


# what a route answers: a plain response, or a stream that sends itself
Reply = Response | StreamedOp
