"""What hostile HTTP servers in the tests send: answers that arrive, but too slowly."""

from __future__ import annotations

import http.server
import time


def drip_header_lines(handler: http.server.BaseHTTPRequestHandler, every: float = 0.3) -> None:
    """A status line, then a header line every ``every`` seconds, never the blank line
    that ends them: each read comes well within any read timeout."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    try:
        for i in range(10_000):
            handler.wfile.write(b"X-Drip-%d: a\r\n" % i)
            handler.wfile.flush()
            time.sleep(every)
    except OSError:
        pass  # the client gave up, as it should
