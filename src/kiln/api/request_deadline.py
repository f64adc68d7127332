"""A deadline and a size cap for a request's head: a client has ``KILN_API_HEADER_SECONDS``
(60) from connecting, or from the first bytes of its next request, until its request line
and headers are in; then the connection is closed. A head larger than ``MAX_HEAD_BYTES``
(1 MiB, Go's ``DefaultMaxHeaderBytes``, dockerd's) is answered 431 and the connection
closed.

uvicorn has none: a client that sent half a request line and stalled kept its connection
(and a file descriptor) for as long as it liked, and a few thousand such clients (a
slowloris) used up the server's descriptors. dockerd has one (Go's ReadHeaderTimeout).
Once the head is in, the request is the application's: a long upload or a build stream
is never cut by this.

httptools has no limit on a head's size: one header line of 50 MB was taken whole (its
pieces joined again for each one read: 13 s of CPU, 140 MB of memory, for one client).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

__all__ = ["MAX_HEAD_BYTES", "header_seconds", "with_request_deadline"]

MAX_HEAD_BYTES = 1 << 20
_TOO_LARGE = json.dumps(
    {"message": f"request header fields too large: the request line and headers exceed "
     f"{MAX_HEAD_BYTES} bytes"}, separators=(",", ":"),
).encode()  # fmt: skip
TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE)
)


def header_seconds() -> float:
    try:
        value = float(os.environ.get("KILN_API_HEADER_SECONDS", "60"))
    except ValueError:
        return 60.0
    return value if value > 0 else 60.0


def with_request_deadline(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``protocol_class`` (uvicorn's HTTP protocol) closing a connection whose request head
    does not arrive in time, or is too large."""
    seconds = header_seconds()

    class Deadline(protocol_class):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return  # refused already: what else comes is not parsed
            super().data_received(data)
            if self._busy():
                self._disarm()  # the head is in: the request is the application's
                self._head_bytes = 0
                return
            if self._head_timer is None:
                self._arm()  # the first bytes of a next request on this connection
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._disarm()
                self.transport.write(TOO_LARGE_RESPONSE)
                self.transport.close()

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
