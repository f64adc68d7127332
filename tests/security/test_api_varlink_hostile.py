"""Hostile clients of ``kiln serve --varlink`` (issue: hostile inputs): connections that
never send a whole message are closed after ``KILN_API_HEADER_SECONDS``, so idle ones
cannot hold every connection slot (64 of them refused every other client for as long as
they stayed), and a deeply nested message closes its own connection without a traceback
in the server's log."""

from __future__ import annotations

import os
import socket
import time

import pytest

from api_server import start_server, stop_server

pytest.importorskip("varlink")

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
HEAD_SECONDS = 1
MAX_CONNECTIONS = 64  # kiln.api.varlink_server's
LIST = b'{"method":"io.podman.ListImages"}\0'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("varlink-hostile")
    vsock = str(tmp / "v.sock")
    env = dict(os.environ, KILN_API_HEADER_SECONDS=str(HEAD_SECONDS))
    proc, _ = start_server(tmp, "--varlink", f"unix:{vsock}", env=env)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(vsock) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield tmp, vsock
    finally:
        assert stop_server(proc) == 0


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)  # blocking: waits for room in the listen backlog
    s.settimeout(60)  # the bound: the server answers or closes long before
    return s


def _answer(s: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\0"):
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def _list_images(path: str) -> bytes:
    with _connect(path) as s:
        s.sendall(LIST)
        return _answer(s)


def test_idle_connections_are_closed_and_others_served(server):
    _, vsock = server
    idle = [_connect(vsock) for _ in range(MAX_CONNECTIONS)]
    try:
        for s in idle:
            assert s.recv(1) == b""  # closed by the server: it never sent a message
    finally:
        for s in idle:
            s.close()
    assert _list_images(vsock) == b'{"parameters": {"images": []}}\0'


def test_a_trickled_message_is_closed(server):
    _, vsock = server
    with _connect(vsock) as s:
        message = b'{"method":"io.podman.ListImages"' + b" " * 1000 + b"}"
        closed = False
        for byte in message:  # one byte a tenth of the head deadline: past it midway
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(HEAD_SECONDS / 10)
        assert closed or s.recv(1) == b""


def test_a_deeply_nested_message_closes_only_its_connection(server):
    tmp, vsock = server
    with _connect(vsock) as s:
        s.sendall(b'{"method":"io.podman.GetImage","parameters":{"id":'
                  + b"[" * 100_000 + b"]" * 100_000 + b"}}\0")  # fmt: skip
        assert s.recv(1) == b""
    assert _list_images(vsock) == b'{"parameters": {"images": []}}\0'
    assert "Traceback" not in (tmp / "server.err").read_text()
