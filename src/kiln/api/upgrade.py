"""A connection a route switched to another protocol (``101 Switching Protocols``, as
``POST /session`` answers) is no longer HTTP: what the client sends on it afterwards
is dropped, never parsed. When the route ends its response, kiln's side of the
connection is shut (a FIN: the client reads its end), and the connection closes when the
client closes it, or at the keep-alive timeout. Closing it at once reset it when the
client had written (its HTTP/2 settings) and the client printed ``connection reset by
peer``.

uvicorn parsed it: the HTTP/2 preface a BuildKit client writes on its upgraded session
was an "Invalid HTTP request", answered with a ``400 Bad Request`` written into the
client's HTTP/2 stream (which printed ``http2: server: error reading preface from
client ...: bogus greeting``). uvicorn's warnings for an upgrade it does not make
itself (with a hint to install a WebSocket library: kiln serves no WebSocket) are not
printed either.
"""

from __future__ import annotations

import asyncio
from typing import Any

SWITCHING = b"HTTP/1.1 101 "


class _WatchedTransport:
    """Wraps a transport: notes a ``101`` response head written through it."""

    def __init__(self, transport: asyncio.Transport):
        self._transport = transport
        self.switched = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.switched and bytes(data[: len(SWITCHING)]) == SWITCHING:
            self.switched = True
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


def dropping_after_switch(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``protocol_class`` (uvicorn's HTTP protocol) ignoring what arrives on a connection
    after it answered ``101``."""

    class AfterSwitch(protocol_class):  # type: ignore[valid-type, misc]
        _watched: _WatchedTransport | None = None

        def connection_made(self, transport: Any) -> None:
            self._watched = _WatchedTransport(transport)
            super().connection_made(self._watched)

        def data_received(self, data: bytes) -> None:
            if self._watched is not None and self._watched.switched:
                return  # the other protocol's bytes: the route holding it reads none
            super().data_received(data)

        def on_response_complete(self) -> None:
            watched = self._watched
            if watched is not None and watched.switched and not watched.is_closing():
                if watched.can_write_eof():
                    watched.write_eof()
                else:  # TLS: no half-close
                    watched.close()
            super().on_response_complete()  # arms the keep-alive timeout that closes it

        def _unsupported_upgrade_warning(self) -> None:
            pass  # uvicorn's; a route answers the upgrade (or refuses it) itself

    AfterSwitch.__name__ = AfterSwitch.__qualname__ = f"AfterSwitch{protocol_class.__name__}"
    return AfterSwitch


__all__ = ["dropping_after_switch"]
