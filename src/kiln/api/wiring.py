"""How routes reach the use cases: one store context per request, in a worker thread."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kiln.ops.config import Config
from kiln.ops.context import Context, open_context
from kiln.ops.events import EventSink, NullSink

from .errors import NotImplementedYet

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
        with context_for(config) as ctx:
            return fn(ctx)

    return await run_in_threadpool(call)


def ops_module(name: str) -> ModuleType:
    """``kiln.ops.<name>``, or 501 when this kiln does not have that use case."""
    try:
        return importlib.import_module(f"kiln.ops.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"kiln.ops.{name}"):
            raise NotImplementedYet(
                f"this kiln server does not provide kiln.ops.{name} yet"
            ) from None
        raise


def ops_function(module: str, *names: str) -> Callable[..., Any]:
    """The first of ``names`` that ``kiln.ops.<module>`` defines (501 if none)."""
    mod = ops_module(module)
    for name in names:
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn
    raise NotImplementedYet(f"this kiln server does not provide kiln.ops.{module}.{names[0]} yet")


__all__ = ["config_of", "context_for", "ops_function", "ops_module", "run_op"]
