"""How routes reach the use cases: one context per request, in a worker thread.

Short requests (``run_op``) run on the server's worker threads, each of which keeps
its store open between requests (``kiln.ops.context.thread_context``: opening one costs
more than answering an inspect); a thread's store goes with the thread. Streamed
operations, on threads of their own, open and close theirs (``context_for``). Routes
reach the store only through the use cases and their context, never directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kiln.ops.config import Config
from kiln.ops.context import Context, open_context, thread_context
from kiln.ops.events import EventSink, NullSink

T = TypeVar("T")


def config_of(request: Request) -> Config:
    return request.app.state.config


@contextmanager
def context_for(config: Config, events: EventSink | None = None) -> Iterator[Context]:
    with open_context(config.root, events=events or NullSink(), config=config) as ctx:
        yield ctx


async def run_op(request: Request, fn: Callable[[Context], T]) -> T:
    """Run ``fn(ctx)`` in a worker thread with a fresh context (SQLite stays in one thread)."""
    config = config_of(request)

    def call() -> T:
        ctx = thread_context(config)
        try:
            return fn(ctx)
        finally:
            ctx.close()

    return await run_in_threadpool(call)


__all__ = ["config_of", "context_for", "run_op"]
