"""Ctrl-C during a pull ends it at once: the blobs still coming stop at their next chunk, the
view ends with ``Error: interrupted`` and exit 130, not after every blob has arrived."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time

import pytest

from interrupted import signal_when

pytestmark = [pytest.mark.root]

CHUNK = 64 << 10
LAYER_SIZE = 64 << 30  # at the drip's pace, hours: the pull can only end by being stopped


class _DripRegistry(http.server.ThreadingHTTPServer):
    """One image whose layer blob comes a chunk at a time, forever in a test's terms."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.streaming = threading.Event()  # the layer's first bytes went out
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
                                  "config": {}}).encode()  # fmt: skip
        config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(self.config).hexdigest(),
                       "size": len(self.config)}  # fmt: skip
        self.layer_digest = "sha256:" + "1" * 64
        layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": self.layer_digest, "size": LAYER_SIZE}  # fmt: skip
        self.manifest = json.dumps({"schemaVersion": 2,
                                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "config": config_desc, "layers": [layer]}).encode()  # fmt: skip
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _DripRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bytes, media_type: str, digest: str = "") -> None:
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        srv = self.server
        if self.path == "/v2/":
            self._answer(b"{}", "application/json")
        elif "/manifests/" in self.path:
            self._answer(srv.manifest, "application/vnd.oci.image.manifest.v1+json",
                         srv.manifest_digest)  # fmt: skip
        elif self.path.endswith(srv.layer_digest):
            self._drip()
        elif "/blobs/" in self.path:
            self._answer(srv.config, "application/octet-stream")
        else:
            self.send_error(404)

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(LAYER_SIZE))
        self.end_headers()
        try:
            for _ in range(LAYER_SIZE // CHUNK):
                self.wfile.write(b"\0" * CHUNK)
                self.wfile.flush()
                self.server.streaming.set()
                time.sleep(0.02)  # the pace of a slow link, not a wait for anything
        except OSError:
            pass  # the client stopped reading, as it should


@pytest.fixture
def drip_registry():
    server = _DripRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_ctrl_c_stops_a_pull_while_its_layer_is_still_coming(tmp_path, drip_registry):
    ref = f"127.0.0.1:{drip_registry.server_address[1]}/slow/big:1"
    argv = [sys.executable, "-m", "kiln", "--root", str(tmp_path / "root"), "pull",
            "--tls-verify=false", ref]  # fmt: skip
    ended = signal_when(argv, drip_registry.streaming, "the pull asking for the layer")
    assert ended.returncode == 130, ended.stderr
    assert ended.stderr.rstrip().endswith("Error: interrupted")
    assert ended.stdout == ""
    listed = subprocess.run(
        [sys.executable, "-m", "kiln", "--root", str(tmp_path / "root"), "images", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and listed.stdout == ""  # no image from half a pull
