"""``GET /events``: the image events of this server (pull, push, tag, untag, delete,
import, load, save, build), as dockerd reports them.

Routes note an event when an operation through this server succeeded. The server keeps
the last ``HISTORY`` events (memory stays flat however long it runs) for ``since``; a
listener gets those, then new ones as they happen, until ``until`` or until it goes
away. A listener that does not read falls behind by at most ``QUEUE`` events, then
misses the oldest, as a dockerd listener would lose its connection: no operation waits
for a reader.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kiln.errors import InvalidArgument

from .params import qfilters, qstr

HISTORY = 1024
QUEUE = 256
_FILTERS = ("type", "event", "image", "label", "scope")


class EventLog:
    """Recent events and the queues of the listeners (used on the event loop only)."""

    def __init__(self, history: int = HISTORY) -> None:
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self.listeners: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def note(self, action: str, ident: str, name: str = "", **attributes: str) -> None:
        now = time.time_ns()
        attrs = {"name": name, **attributes} if name else dict(attributes)
        event = {
            "status": action,
            "id": ident,
            "Type": "image",
            "Action": action,
            "Actor": {"ID": ident, "Attributes": attrs},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        self.recent.append(event)
        for queue in self.listeners:
            if queue.full():
                queue.get_nowait()  # a reader that does not keep up misses the oldest
            queue.put_nowait(event)


def log_of(request: Request) -> EventLog:
    state = request.app.state
    if getattr(state, "events", None) is None:
        state.events = EventLog()
    return state.events


def note(request: Request, action: str, ident: str, name: str = "") -> None:
    """Record that ``action`` happened to image ``ident`` (an ID or, for pull and push,
    the reference) named ``name``. On the event loop."""
    log = log_of(request)
    log.loop = asyncio.get_running_loop()
    log.note(action, ident, name)


def note_from_thread(request: Request, action: str, ident: str, name: str = "") -> None:
    """``note`` from a worker thread (a byte stream's work, which has no result to render)."""
    log = log_of(request)
    if log.loop is not None:
        log.loop.call_soon_threadsafe(log.note, action, ident, name)


def note_removal(request: Request, result: Any) -> None:
    """The untag and delete events of an ``ops.images.RemoveResult``."""
    for name in result.untagged:
        note(request, "untag", name, name)
    for image_id in result.deleted:
        note(request, "delete", image_id)


def _time(value: str, what: str) -> float | None:
    """Docker's ``since``/``until``: Unix seconds (fractions allowed)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(
            f'invalid value for query parameter "{what}": "{value}": give Unix seconds'
        ) from None


def _matcher(request: Request):
    wanted: dict[str, set[str]] = {}
    for item in qfilters(request.query_params):
        key, _, value = item.partition("=")
        if key not in _FILTERS:
            raise InvalidArgument(f'invalid filter "{key}": kiln reports image events only')
        wanted.setdefault(key, set()).add(value)

    def matches(event: dict[str, Any]) -> bool:
        if "type" in wanted and "image" not in wanted["type"]:
            return False
        if "scope" in wanted and "local" not in wanted["scope"]:
            return False
        if "event" in wanted and event["Action"] not in wanted["event"]:
            return False
        if "image" in wanted:
            attrs = event["Actor"]["Attributes"]
            names = {event["id"], event["id"].removeprefix("sha256:"), attrs.get("name", "")}
            if not names & wanted["image"]:
                return False
        return "label" not in wanted  # image events carry no labels here

    return matches


async def events(request: Request) -> Response:
    q = request.query_params
    since, until = _time(qstr(q, "since"), "since"), _time(qstr(q, "until"), "until")
    matches = _matcher(request)
    log = log_of(request)
    log.loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
    log.listeners.add(queue)
    past = [e for e in log.recent if since is not None and e["timeNano"] / 1e9 >= since]

    def wanted(e: dict[str, Any]) -> bool:
        return matches(e) and (until is None or e["timeNano"] / 1e9 <= until)

    async def stream() -> AsyncIterator[bytes]:
        try:
            for e in past:
                if wanted(e):
                    yield (json.dumps(e) + "\n").encode()
            seen = past[-1]["timeNano"] if past else 0
            while until is None or time.time() < until:
                wait = 1.0 if until is None else max(0.0, min(1.0, until - time.time()))
                try:
                    e = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if e["timeNano"] > seen and wanted(e):
                    yield (json.dumps(e) + "\n").encode()
        finally:
            log.listeners.discard(queue)

    return StreamingResponse(stream(), media_type="application/json")


routes = [
    Route("/events", events, methods=["GET"]),
    Route("/libpod/events", events, methods=["GET"]),
]

__all__ = ["EventLog", "note", "note_from_thread", "note_removal", "routes"]
