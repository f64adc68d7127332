"""How routes reach the use cases: one context per request, in a worker thread.

Short requests (``run_op``) run on the server's worker threads, each of which keeps
its store open between requests (``kiln.ops.context.thread_context``: opening one costs
more than answering an inspect); a thread's store goes with the thread. Streamed
operations, on threads of their own, open and close theirs (``context_for``). Routes
reach the store only through the use cases and their context, never directly.

Reads of one image by name (inspect, exists: a few indexed statements and two small
blobs, well under a millisecond) run on the event loop itself (``run_read``): the hop to a
worker thread and back cost more CPU than the read, and under many parallel clients the
hand-offs of the GIL between the loop and the workers made the slow tail. The loop's
store is opened once, on a worker thread (opening may migrate the schema and wait for
another process's write), and kept for the server's life. The loop never waits for a
lock: its connection gives up at once when another holds one that readers must wait for
(a WAL reader rarely meets one: another process rebuilding the WAL index), and
the read is done again on a worker thread, which may wait; every other client is answered
meanwhile. It reads the database through a memory mapping (``for_event_loop``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kiln.ops.config import Config
from kiln.ops.context import Context, for_event_loop, open_context, open_store, thread_context
from kiln.ops.events import EventSink, NullSink
from kiln.util.cancel import CancelFlag, cancelled_by
from kiln.util.sqlite import is_busy

from .streaming import in_flight, listen_for_hang_up

if TYPE_CHECKING:
    from kiln.ops.context import Store  # the api reaches the store through ops

T = TypeVar("T")


def config_of(request: Request) -> Config:
    return request.app.state.config


@contextmanager
def context_for(config: Config, events: EventSink | None = None) -> Iterator[Context]:
    with open_context(config.root, events=events or NullSink(), config=config) as ctx:
        yield ctx


async def run_op(request: Request, fn: Callable[[Context], T]) -> T:
    """Run ``fn(ctx)`` in a worker thread with a fresh context (SQLite stays in one thread),
    under a cancel flag set when the server stops or the client hangs up, as dockerd cancels
    a request's context: a login or lookup waiting on a registry that never answers ends
    then, instead of holding its thread and connection up to its deadline.

    Every route reads the body it uses before its first ``run_op``; what the hang-up's
    listener takes off the request is only the end of the body or the hang-up itself."""
    config = config_of(request)
    cancel = CancelFlag()

    def call() -> T:
        ctx = thread_context(config)
        try:
            with cancelled_by(cancel):
                return fn(ctx)
        finally:
            ctx.close()

    with in_flight(cancel):
        listener = asyncio.ensure_future(listen_for_hang_up(request.receive, cancel))
        try:
            return await run_in_threadpool(call)
        finally:
            listener.cancel()


async def run_read(request: Request, fn: Callable[[Context], T]) -> T:
    """Run ``fn(ctx)`` on the event loop's thread, over the store the server keeps for its
    reads: only for reads bounded by one image (never a scan, a write, or a registry)."""
    store = getattr(request.app.state, "read_store", None) or await _loop_store(request)
    try:
        return fn(Context(store=store, config=config_of(request), borrowed_store=True))
    except Exception as exc:
        if not is_busy(exc):
            raise
    return await run_op(request, fn)  # a worker thread may wait for the lock


async def store_version(request: Request) -> int:
    """A number that changes whenever anything is committed to the store, by this server
    or any other process: the data version of the loop's connection, which only reads,
    so that every commit is another connection's (``Database.data_version``)."""
    return (await _loop_store(request)).data_version()


async def _loop_store(request: Request) -> Store:
    """The store the event loop reads through, opened on first use."""
    state = request.app.state
    store: Store | None = getattr(state, "read_store", None)
    if store is None:
        opened = await run_in_threadpool(open_store, config_of(request))
        store = getattr(state, "read_store", None)
        if store is None:
            for_event_loop(opened)  # this (the loop's) thread's connection only
            state.read_store = store = opened
        else:  # another request opened it meanwhile
            opened.close()
    return store


__all__ = ["config_of", "context_for", "run_op", "run_read", "store_version"]
