"""A response in one ``send``: uvicorn's HTTP protocol over a transport that gathers the
writes of one turn of the event loop.

uvicorn writes a response's head and its body with one ``transport.write`` each, and
each goes to the socket at once: two system calls, and two wake-ups of the client, for
every small answer (an image inspect, a ``_ping``). Here the protocol's transport
holds what is written until the end of the current turn of the loop (``call_soon``) and
sends it together: one system call for a whole small response. The bytes and their
order are unchanged; a streamed response still leaves chunk by chunk, each at the end of
the turn that wrote it; ``close`` and ``write_eof`` send what is held first.

The transport also reads at most ``READ_SIZE`` bytes at a time: asyncio's default
(256 KiB) makes every request's ``recv`` buffer a fresh memory mapping, mapped, shrunk
and unmapped again (three more system calls for a request of a few hundred bytes); a
64 KiB buffer comes from the heap. Uploads read in 64 KiB pieces.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kiln.api.request_deadline import with_request_deadline
from kiln.api.upgrade import dropping_after_switch

READ_SIZE = 64 * 1024


class GatheringTransport:
    """Wraps a transport: writes of one loop turn leave in one ``write``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        if isinstance(getattr(transport, "max_size", None), int):  # asyncio's socket transport
            transport.max_size = READ_SIZE  # type: ignore[attr-defined]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._held)

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


def gathering(protocol_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``protocol_class`` (uvicorn's HTTP protocol) writing through a GatheringTransport."""

    class Gathering(protocol_class):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            loop = asyncio.get_running_loop()
            super().connection_made(GatheringTransport(transport, loop))  # type: ignore[arg-type]

    Gathering.__name__ = Gathering.__qualname__ = f"Gathering{protocol_class.__name__}"
    return Gathering


def http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol as ``http="auto"`` picks it (httptools, else h11), gathering,
    with a deadline for each request's head (``kiln.api.request_deadline``); with httptools,
    a connection switched by a ``101`` is no longer parsed (``kiln.api.upgrade``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

        return gathering(with_request_deadline(dropping_after_switch(HttpToolsProtocol)))
    except ImportError:  # httptools is optional (kiln[server])
        from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

        return gathering(with_request_deadline(H11Protocol))


__all__ = ["GatheringTransport", "gathering", "http_protocol"]
