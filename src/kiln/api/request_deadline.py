"""A deadline for a request's head: a client has ``KILN_API_HEADER_SECONDS`` (60) from
connecting, or from the first bytes of its next request, until its request line and
headers are in; then the connection is closed.

uvicorn has none: a client that sent half a request line and stalled kept its connection
(and a file descriptor) for as long as it liked, and a few thousand such clients (a
slowloris) used up the server's descriptors. dockerd has one (Go's ReadHeaderTimeout).
Once the head is in, the request is the application's: a long upload or a build stream
is never cut by this.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["header_seconds", "with_request_deadline"]


def header_seconds() -> float:
    try:
        value = float(os.environ.get("KILN_API_HEADER_SECONDS", "60"))
    except ValueError:
        return 60.0
    return value if value > 0 else 60.0


def with_request_deadline(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``protocol_class`` (uvicorn's HTTP protocol) closing a connection whose request head
    does not arrive in time."""
    seconds = header_seconds()

    class Deadline(protocol_class):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._busy():
                self._disarm()  # the head is in: the request is the application's
            elif self._head_timer is None:
                self._arm()  # the first bytes of a next request on this connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _busy(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _arm(self) -> None:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self._busy() and not self.transport.is_closing():
                self.transport.close()

    Deadline.__name__ = Deadline.__qualname__ = f"Deadline{protocol_class.__name__}"
    return Deadline
