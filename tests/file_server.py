"""A directory's files over HTTP on loopback, for tests of ADD <url>, remote build contexts
and downloads.

    with serving(tmp_path / "www") as url:   # "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log on the test's stderr


@contextlib.contextmanager
def serving(directory: str | os.PathLike[str]) -> Iterator[str]:
    """Serve ``directory`` (as it is at each request) on a free port of 127.0.0.1 for the
    block; yields the base URL, without a trailing slash."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)
