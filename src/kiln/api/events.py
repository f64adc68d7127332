"""``GET /events`` and ``/libpod/events``: image events (pull, push, tag, untag, delete,
import, load, save, build) of every kiln process on this server's store, as dockerd and
podman report them.

The use cases record them in the store's journal (:mod:`kiln.ops.image_events`), so a CLI
``kiln tag`` next to the server shows up here as the server's own operations do. A request
gets the journal's events from ``since`` (none without it), then (unless libpod's
``stream=false``) the ones appended after, polled every ``POLL`` seconds, until ``until``
or until the client goes away. A listener costs one indexed query per poll and holds
nothing in memory: no operation ever waits for a reader.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kiln.ops import image_events

from .docker_events import DockerEventFilter, docker_event
from .params import qbool, qfilters, qstr
from .wiring import run_op

if TYPE_CHECKING:
    from kiln.ops.context import Context

POLL = image_events.POLL


async def events(request: Request) -> Response:
    q = request.query_params
    since = image_events.parse_time(qstr(q, "since"), "since")
    until = image_events.parse_time(qstr(q, "until"), "until")
    libpod = "/libpod/" in request.url.path
    filters = qfilters(q)
    match = image_events.EventFilter(filters) if libpod else DockerEventFilter(filters)
    # libpod's stream=false: the events so far, then the end (podman events --stream=false)
    follow = qbool(q, "stream", True) if libpod else True
    shape = image_events.libpod_json if libpod else docker_event

    def _line(ev: Any) -> bytes:
        return (json.dumps(shape(ev)) + "\n").encode()

    earlier, last = await run_op(request, lambda ctx: image_events.past(ctx, since, until, match))

    async def stream() -> AsyncIterator[bytes]:
        for ev in earlier:
            yield _line(ev)
        after = last

        def newer(ctx: Context) -> tuple[list[image_events.ImageEvent], int]:
            return image_events.new_events(ctx, after, match)

        while follow and (until is None or time.time() < until):
            found, after = await run_op(request, newer)
            for ev in found:
                if until is not None and ev.time_ns > until * 1e9:
                    return
                yield _line(ev)
            if await request.is_disconnected():
                return
            wait = POLL if until is None else max(0.0, min(POLL, until - time.time()))
            await asyncio.sleep(wait)

    return StreamingResponse(stream(), media_type="application/json")


routes = [
    Route("/events", events, methods=["GET"]),
    Route("/libpod/events", events, methods=["GET"]),
]

__all__ = ["routes"]
