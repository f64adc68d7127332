"""Ctrl-C during a push ends it at once: the layers still going up stop at their next read
and the registry is sent no more of them, not the rest of every layer first."""

from __future__ import annotations

import http.server
import sys
import threading
import time

import pytest

from interrupted import signal_when
from kiln.cli.main import run
from random_rootfs import random_rootfs_tar

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

CHUNK = 64 << 10
LAYER_BYTES = 48 << 20  # random: the compressed layer is as large; taken at 3 MB/s


class _SlowRegistry(http.server.ThreadingHTTPServer):
    """Takes a blob's upload a chunk at a time (a slow link) and says it has no blobs."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiving = threading.Event()  # a layer's first bytes arrived
        self.received = 0  # body bytes of uploads read so far
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _SlowRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _empty(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._empty(200 if self.path == "/v2/" else 404)

    def do_HEAD(self) -> None:
        self._empty(404)

    def do_POST(self) -> None:
        self._empty(202, Location="/upload/1")

    def do_PUT(self) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        try:
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    return  # the client went away
                left -= len(data)
                with self.server.lock:
                    self.server.received += len(data)
                if self.server.received > CHUNK:
                    self.server.receiving.set()
                time.sleep(0.02)  # the pace of a slow link, not a wait for anything
        except OSError:
            return
        self._empty(201)


@pytest.fixture
def slow_registry():
    server = _SlowRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_ctrl_c_stops_a_push_while_its_layer_is_still_going_up(tmp_path, slow_registry):
    root = str(tmp_path / "root")
    tarball = random_rootfs_tar(tmp_path / "big.tar", LAYER_BYTES)
    assert run(["--root", root, "import", "-q", tarball, "big:1"]) == 0
    ref = f"127.0.0.1:{slow_registry.server_address[1]}/slow/big:1"
    argv = [sys.executable, "-m", "kiln", "--root", root, "push", "--tls-verify=false", "big:1",
            ref]  # fmt: skip
    ended = signal_when(argv, slow_registry.receiving, "the push sending the layer")
    assert ended.returncode == 130, ended.stderr
    assert ended.stderr.rstrip().endswith("Error: interrupted")
    with slow_registry.lock:
        received = slow_registry.received
    assert received < LAYER_BYTES // 2  # it stopped sending, not finished the layer first
