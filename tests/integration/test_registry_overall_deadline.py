"""One registry request has one deadline across its retries (``RegistryOptions.deadline``):
a registry that accepts connections and never answers costs that long, not ``retries`` x
``timeout`` plus the waits between them, and the error says what happened (no traceback).
A request body that takes longer to send than ``timeout`` is not a stalled response: the
deadlines count the time spent waiting for the response, after the body was sent."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kiln.errors import Unavailable
from kiln.oci import Reference
from kiln.registry import RegistryClient, RegistryOptions
from registry_env import isolate_registry_env

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never writes a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        done.set()
        t.join(timeout=5)
        for c in held:
            c.close()
        srv.close()


def test_a_silent_registry_costs_one_deadline_across_retries():
    with silent_server() as host:
        opts = RegistryOptions(
            tls_verify=False, timeout=1.0, retries=3, retry_delay=0.2, deadline=1.5
        )
        started = time.monotonic()
        with RegistryClient(opts) as client, pytest.raises(Unavailable) as err:
            client.get_manifest(Reference.parse(f"{host}/a/b:1"))
        took = time.monotonic() - started
    # without the overall deadline: 3 x 1 s per scheme (https, then http for an insecure
    # registry) plus the waits, over 6 s; the deadline ends it at 1.5 s (here within 0.1 s
    # of it: the bound leaves a loaded machine seconds, and still tells 1.5 from 6)
    assert took < 4.5, took
    text = str(err.value)
    assert host in text and "1.5 s" in text and "deadline" in text, text
    assert "Traceback" not in text


def test_retries_still_run_inside_the_deadline():
    with silent_server() as host:
        opts = RegistryOptions(tls_verify=False, timeout=0.3, retries=3, retry_delay=0.1,
                               deadline=30.0)  # fmt: skip
        started = time.monotonic()
        with RegistryClient(opts) as client, pytest.raises(Unavailable) as err:
            client.get_manifest(Reference.parse(f"{host}/a/b:1"))
        took = time.monotonic() - started
    # every attempt ran (3 x 0.3 s per scheme, https then http, waits 0.1 + 0.2 s): the
    # deadline is a bound
    assert 3 * (0.3 + 0.3) + 0.3 - 0.1 <= took < 10, took
    assert "timed out" in str(err.value) and "deadline" not in str(err.value), str(err.value)


def test_an_insecure_registry_that_is_down_costs_one_sequence_of_retries(caplog):
    # --tls-verify=false: each attempt tries https, then http; the retries are not run
    # once per scheme (twice the waits and the time on a dead registry)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused
    opts = RegistryOptions(tls_verify=False, retries=3, retry_delay=0.05, deadline=30.0)
    caplog.set_level(logging.DEBUG, logger="kiln.registry")
    with RegistryClient(opts) as client, pytest.raises(Unavailable) as err:
        client.get_manifest(Reference.parse(f"{host}/a/b:1"))
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 2, waits  # 3 attempts, 2 waits
    tried = [r.getMessage() for r in caplog.records if "failed: ConnectError" in r.getMessage()]
    assert sum(" over https " in m for m in tried) == 3, tried
    assert sum(" over http " in m for m in tried) == 3, tried
    text = str(err.value)
    assert f'pinging container registry {host}: Get "https://{host}/v2/"' in text, text


class _Sink(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # the ping
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 65536)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_body_slower_to_send_than_the_timeout_is_not_a_stalled_response():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    host = f"127.0.0.1:{srv.server_address[1]}"

    def body() -> Iterator[bytes]:
        for _ in range(8):  # 1.6 s of sending: more than the timeout and the deadline
            time.sleep(0.2)
            yield b"x" * 1024

    try:
        opts = RegistryOptions(tls_verify=False, timeout=0.5, deadline=1.0)
        with RegistryClient(opts) as client:
            conn = client.connection(host)
            resp = conn.request("PUT", "/v2/a/blobs/uploads/1", "uploading a blob", ok=(201,),
                                headers={"Content-Length": str(8 * 1024)}, content=body(),
                                retry=False)  # fmt: skip
            assert resp.status_code == 201
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)
