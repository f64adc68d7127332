"""At a stop, end the HTTP connections whose sends have been stuck for ``BLOCKED_SECONDS``.

A client that stopped reading a streamed response (a save, a build's output) holds its
response's send in uvicorn's wait for the socket to drain, or, once the response ended,
the connection's close, which waits for the bytes still unsent; uvicorn's stop waits for
that connection for the whole grace (30 s). Once the server stops, a connection that has
had bytes waiting to go out that long is aborted: a blocked send fails, the response ends
and its operation is cancelled. A client still reading takes its bytes and gets the end of
its stream. The varlink listener does the same for its connections
(``kiln.api.varlink_server``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

BLOCKED_SECONDS = 2.0
POLL_SECONDS = 0.25


def _unsent(connection: Any) -> bool:
    """Whether bytes written to the connection wait to go out: its client is not reading (a
    response ended with bytes unsent to such a client is waiting for them too, never paused)."""
    transport = getattr(connection, "transport", None)
    return transport is not None and transport.get_write_buffer_size() > 0


async def end_blocked_sends(servers: list[Any], blocked: float = BLOCKED_SECONDS) -> None:
    """Until cancelled: abort the connections of ``servers`` (uvicorn servers that are
    stopping) that have had bytes waiting to go out for ``blocked`` seconds."""
    stuck_since: dict[int, float] = {}
    while True:
        now = time.monotonic()
        seen: set[int] = set()
        for server in servers:
            for connection in list(server.server_state.connections):
                if not _unsent(connection):
                    continue
                key = id(connection)
                seen.add(key)
                since = stuck_since.setdefault(key, now)
                if now - since >= blocked:
                    connection.transport.abort()
        stuck_since = {k: v for k, v in stuck_since.items() if k in seen}
        await asyncio.sleep(POLL_SECONDS)


__all__ = ["BLOCKED_SECONDS", "end_blocked_sends"]
