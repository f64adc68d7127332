"""A client of ``kiln serve`` that never finishes its request head loses its connection
(issue: hostile inputs, slowloris): uvicorn kept a half-sent request open forever, so a
few thousand stalled clients used up the server's file descriptors. Once the head is in,
the request is the application's: a slow body is never cut. A head over 1 MiB (one huge
header line, or a great many headers) is answered 431: httptools took a 50 MB header
whole, with 13 s of CPU and 140 MB of memory."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest

from api_server import start_server, stop_server

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
HEAD_SECONDS = 1


@pytest.fixture(scope="module")
def sock(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("request-deadline")
    proc, path = start_server(tmp, env=dict(os.environ, KILN_API_HEADER_SECONDS=str(HEAD_SECONDS)))
    try:
        yield path
    finally:
        assert stop_server(proc) == 0


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)  # the bound: the server closes long before
    s.connect(path)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_a_half_sent_request_line_is_closed(sock):
    with _connect(sock) as s:
        s.sendall(b"GET /_pi")
        assert _read_all(s) == b""  # EOF, no answer: the head never came


def test_a_half_sent_head_after_a_served_request_is_closed(sock):
    with _connect(sock) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n")  # and stalls
        assert _read_all(s) == b""


def test_a_slow_body_after_the_head_is_not_cut(sock):
    body = b"not a tar archive at all\n" * 40
    head = (
        b"POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
        b"Content-Type: application/x-tar\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with _connect(sock) as s:
        s.sendall(head + body[:10])
        time.sleep(HEAD_SECONDS * 3)  # past the head deadline, mid-body
        s.sendall(body[10:])
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert b"tar" in answer.lower(), answer[:400]  # the load's own error about the archive


def _send_head(path: str, head: bytes) -> bytes:
    """``head`` sent in pieces as a client writes it, and the server's whole answer; the
    server may stop reading (and close) before all of it is sent."""
    with _connect(path) as s:
        try:
            for at in range(0, len(head), 65536):
                s.sendall(head[at : at + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        with contextlib.suppress(ConnectionResetError):  # the rest it never read
            while chunk := s.recv(65536):
                out += chunk
        return out


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Huge: " + b"a" * (2 << 20) + b"\r\n",  # one header line of 2 MiB
        b"".join(b"X-%d: a\r\n" % i for i in range(200_000)),  # 200,000 headers
    ],
    ids=["one-huge-line", "many-headers"],
)
def test_a_head_over_one_mib_is_refused(sock, headers):
    answer = _send_head(sock, b"GET /_ping HTTP/1.1\r\nHost: d\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert answer.endswith(b'the request line and headers exceed 1048576 bytes"}'), answer
    ok = _send_head(sock, b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")  # the server still serves


def test_a_head_under_one_mib_is_served(sock):
    head = b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
    answer = _send_head(sock, head + b"X-Big: " + b"a" * (900 << 10) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
