"""Image lists answered again from memory while the store has not changed.

``docker images`` and ``podman images`` against a store of 10,000 images cost the server
a listing of every image each time (its rows, the summaries, their JSON: a few hundred ms
of CPU), however rarely the store changes; dockerd keeps its images in memory. The server
keeps the JSON bodies of its last few lists instead, each with the store's data version
read before it was made (:func:`kiln.api.wiring.store_version`): while the version is
the same, nothing was committed since, by this server or any other process, and the body
is still the answer. A list whose answer follows the clock (an ``until`` filter, a
duration ago) is never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kiln.ops.context import Context
from kiln.util.gc_pause import cyclic_gc_paused

from .wiring import run_op, store_version

#: bodies kept (one per route and query): a 10,000-image list is a few MB
MAX_ENTRIES = 4


class ListingCache:
    """The JSON bodies of recent lists by key, each valid for one store data version."""

    def __init__(self, entries: int | None = None):
        self._entries = MAX_ENTRIES if entries is None else entries
        self._bodies: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int) -> bytes | None:
        with self._lock:
            held = self._bodies.get(key)
            if held is None or held[0] != version:
                return None
            self._bodies.move_to_end(key)
            return held[1]

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        with self._lock:
            # bodies of an older version are answers no more
            for stale in [k for k, (v, _) in self._bodies.items() if v != version]:
                del self._bodies[stale]
            self._bodies[key] = (version, body)
            self._bodies.move_to_end(key)
            while len(self._bodies) > self._entries:
                self._bodies.popitem(last=False)


async def listing_response(
    request: Request,
    key: Hashable,
    filters: Sequence[str],
    make: Callable[[Context], Any],
) -> Response:
    """The JSON of ``make(ctx)`` (run on a worker thread), from the cache while the store
    is unchanged; ``key`` names the route and every parameter the answer depends on."""
    if any(f.partition("=")[0].strip().lower() == "until" for f in filters):
        return Response(await run_op(request, lambda ctx: _made(ctx, make)), media_type=_JSON)
    state = request.app.state
    cache: ListingCache | None = getattr(state, "listing_cache", None)
    if cache is None:
        cache = state.listing_cache = ListingCache()
    version = await store_version(request)  # before the list: a later commit changes it
    body = cache.get(key, version)
    if body is None:
        body = await run_op(request, lambda ctx: _made(ctx, make))
        cache.put(key, version, body)
    return Response(body, media_type=_JSON)


_JSON = "application/json"


def _made(ctx: Context, make: Callable[[Context], Any]) -> bytes:
    """The JSON of ``make(ctx)``, as JSONResponse would send it."""
    with cyclic_gc_paused():  # a dict per image, no cycles among them
        return bytes(JSONResponse(make(ctx)).body)


__all__ = ["ListingCache", "listing_response"]
