"""A registry that answers but drips its bytes (or stalls) cannot make a pull wait
forever: response headers and manifests have a deadline, blobs a minimum average rate (issue: hostile inputs,
class 6). The hostile registry is a real HTTP server on 127.0.0.1 written here."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from kiln.errors import Unavailable
from kiln.oci import Digest, Reference
from kiln.registry.client import RegistryClient, RegistryOptions
from slow_servers import drip_header_lines

BLOB = Digest.of_bytes(b"x" * 100_000)


class DripHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "/headers-drip/" in self.path:  # the status line, then a header every 0.3 s
            drip_header_lines(self)
            return
        size = 100_000 if "/blobs/" in self.path else 4000
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        kind = "application/octet-stream" if "/blobs/" in self.path else "application/json"
        self.send_header("Content-Type", kind)
        self.end_headers()
        try:  # one byte every 50 ms: never idle long enough for a read timeout
            for _ in range(size):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up, as it should


@pytest.fixture
def drip_registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client(**kw) -> RegistryClient:
    return RegistryClient(RegistryOptions(tls_verify=False, retries=1, retry_delay=0, **kw))


@pytest.mark.timeout(60)
def test_a_dripping_manifest_hits_its_deadline(drip_registry):
    start = time.monotonic()
    with client(timeout=2.0) as c, pytest.raises(Unavailable, match="not complete after 2 s"):
        c.get_manifest(Reference.parse(f"{drip_registry}/slow/image:1"))
    assert time.monotonic() - start < 10


@pytest.mark.timeout(60)
def test_a_dripping_blob_is_abandoned_below_the_minimum_rate(drip_registry):
    start = time.monotonic()
    with client(min_blob_rate=1000, rate_grace=1.5) as c:
        reader = c.open_blob(Reference.parse(f"{drip_registry}/slow/image:1"), BLOB)
        with pytest.raises(Unavailable, match="below the minimum rate"):
            while reader.read(65536):
                pass
    assert time.monotonic() - start < 10


@pytest.mark.timeout(60)
def test_dripping_headers_hit_the_deadline_for_a_manifest(drip_registry):
    start = time.monotonic()
    with client(timeout=2.0) as c, pytest.raises(Unavailable, match="no complete response headers"):
        c.get_manifest(Reference.parse(f"{drip_registry}/headers-drip/image:1"))
    assert time.monotonic() - start < 10


@pytest.mark.timeout(60)
def test_dripping_headers_hit_the_deadline_for_a_blob(drip_registry):
    start = time.monotonic()
    with client(timeout=2.0) as c, pytest.raises(Unavailable, match="no complete response headers"):
        c.open_blob(Reference.parse(f"{drip_registry}/headers-drip/image:1"), BLOB).read(10)
    assert time.monotonic() - start < 10
