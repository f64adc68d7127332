"""``ADD <url>``, ``kiln add <url>`` and URL build contexts are bounded in size and
time (issue: hostile inputs, class 6): a server that drips its body, or sends more
than the cap, gets a clear error and leaves no file behind. The servers are real
HTTP servers on 127.0.0.1 written here."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from kiln.errors import InvalidArgument, NotFound, Unavailable
from kiln.util.download import download
from slow_servers import drip_header_lines


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if self.path.startswith("/headers-drip"):  # a header line every 0.3 s, forever
            drip_header_lines(self)
            return
        if self.path.startswith("/cut"):  # the connection ends mid-body
            self._cut(chunked=self.path.startswith("/cut-chunked"))
            return
        drip = self.path.startswith("/drip")
        size = 100_000 if drip else 3 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            if drip:  # a byte every 50 ms: never idle long enough for a read timeout
                for _ in range(size):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(b"y" * size)
        except OSError:
            pass

    def _cut(self, *, chunked: bool) -> None:
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"a\r\n" + b"z" * 10 + b"\r\n" if chunked else b"z" * 10)
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.timeout(60)
def test_a_dripping_body_is_abandoned(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(Unavailable, match="below the minimum rate"):
        download(f"{server}/drip", str(tmp_path / "f"), what="ADD x", min_rate=1000, grace=1.5)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "f").exists()


@pytest.mark.timeout(60)
def test_dripping_headers_are_abandoned_at_the_timeout(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(Unavailable, match="no complete response headers after 2 s"):
        download(f"{server}/headers-drip", str(tmp_path / "f"), what="ADD x", timeout=2.0)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "f").exists()


def test_a_body_over_the_cap_is_refused_and_removed(server, tmp_path):
    with pytest.raises(InvalidArgument, match="over the 1048576-byte limit"):
        download(f"{server}/big", str(tmp_path / "f"), what="ADD x", max_bytes=1 << 20)
    assert not (tmp_path / "f").exists()
    got = download(f"{server}/big", str(tmp_path / "g"), what="ADD x")
    assert got.size == 3 * 1024 * 1024 == os.path.getsize(tmp_path / "g")


@pytest.mark.parametrize("path", ["cut", "cut-chunked"])
def test_a_body_the_server_cuts_short_is_an_error(server, tmp_path, path):
    """The server closes the connection 10 bytes into a body of 1000 (Content-Length) or
    inside its chunks: ADD got the 10 bytes as the whole file (a truncated download taken
    for complete), or an IncompleteRead shown as an unexpected error."""
    with pytest.raises(
        Unavailable, match="ADD x: cannot download it: the server ended the body after 10 "
    ):
        download(f"{server}/{path}", str(tmp_path / "f"), what="ADD x")
    assert not (tmp_path / "f").exists()


def test_not_found_and_refused_schemes(server, tmp_path):
    with pytest.raises(NotFound, match="ADD x: the server answered 404"):
        download(f"{server}/missing", str(tmp_path / "f"), what="ADD x")
    with pytest.raises(InvalidArgument, match="only http and https"):
        download("file:///etc/passwd", str(tmp_path / "f"), what="ADD x")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None, reason="needs root")
def test_build_add_over_the_cap_fails_cleanly(server, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM scratch\nADD {server}/big /big\n")
    root = tmp_path / "root"
    env = dict(os.environ, KILN_MAX_DOWNLOAD_BYTES=str(1 << 20))
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(root)]
    res = subprocess.run(
        [*cmd, "build", "-t", "big", str(ctx)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 125, res.stderr
    assert "Containerfile:2" in res.stderr and "over the 1048576-byte limit" in res.stderr
    images = subprocess.run([*cmd, "images", "-q"], capture_output=True, text=True, timeout=60)
    assert images.stdout.strip() == ""
