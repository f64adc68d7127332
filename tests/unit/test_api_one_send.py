"""A small response leaves the server in one send: the writes of one turn of the event
loop (uvicorn's head, then its body) are gathered; later turns' writes, ``close`` and
the order of the bytes behave as before. Over a real socket pair and asyncio transport;
the sends are counted at the transport's ``write`` (each is one ``send`` when the socket
has room)."""

from __future__ import annotations

import asyncio
import socket

from kiln.api.one_send import READ_SIZE, GatheringTransport, http_protocol
from kiln.api.server import _uvicorn_config


def _received(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


async def _scenario() -> list[list[bytes]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    sent: list[bytes] = []
    real_write = transport.write

    def counted(data):
        sent.append(bytes(data))
        real_write(data)

    transport.write = counted  # type: ignore[method-assign]
    gathered = GatheringTransport(transport, loop)

    def _records(sock: socket.socket) -> list[bytes]:
        got = _received(sock)
        assert got == b"".join(sent), "the bytes arrive as written, in order"
        out = list(sent)
        sent.clear()
        return out

    assert transport.max_size == READ_SIZE  # type: ignore[attr-defined]
    seen = []
    gathered.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    gathered.write(b"")
    gathered.write(b"body")
    assert _records(b) == []  # held until the end of this turn
    await asyncio.sleep(0.05)
    seen.append(_records(b))
    gathered.write(b"chunk-1")  # a streamed response: each turn's writes leave then
    await asyncio.sleep(0.05)
    gathered.write(b"chunk-2")
    await asyncio.sleep(0.05)
    seen.append(_records(b))
    gathered.write(b"last")
    gathered.close()  # sends what is held first
    await asyncio.sleep(0.05)
    seen.append(_records(b))
    b.close()
    return seen


def test_one_turns_writes_leave_in_one_send_in_order():
    first, streamed, closing = asyncio.run(asyncio.wait_for(_scenario(), 10))
    assert first == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
    assert streamed == [b"chunk-1", b"chunk-2"]
    assert closing[0] == b"last"


def test_the_server_speaks_http_through_the_gathering_transport():
    config = _uvicorn_config(object(), None)
    config.load()
    protocol = config.http_protocol_class
    assert protocol.__name__.startswith("Gathering")
    # gathering over the request-head deadline (kiln.api.request_deadline) over uvicorn's
    # (httptools' through kiln.api.upgrade)
    assert protocol.__mro__[1].__name__.startswith("Deadline")
    uvicorns = [c for c in protocol.__mro__ if c.__module__.startswith("uvicorn.protocols.http.")]
    assert uvicorns and http_protocol().__mro__[-3] is protocol.__mro__[-3]
