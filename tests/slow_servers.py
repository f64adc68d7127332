"""What hostile HTTP servers in the tests send: answers that arrive, but too slowly."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
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


class StallingProxy:
    """A TCP proxy in front of ``upstream`` ("HOST:PORT") that forwards both ways until
    ``down`` bytes have come from the server, or ``up`` bytes from the client, then holds
    that direction: ``stalled`` is set, and nothing more passes until ``release``. The
    registry behind a link that stops mid-blob, at a point a test can wait for.
    ``stalled_link_closed`` is set once the client closes a connection the server stalled."""

    def __init__(self, upstream: str, *, down: int | None = None, up: int | None = None):
        self._upstream = upstream
        self._limits = {"down": down, "up": up}
        self._counts = {"down": 0, "up": 0}
        self.stalled = threading.Event()
        self.stalled_link_closed = threading.Event()
        self._stalled_clients: list[socket.socket] = []
        self._released = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        host, port = self._upstream.rsplit(":", 1)
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection((host, int(port)), timeout=30)
            except OSError:
                return
            server.settimeout(None)
            self._sockets += [client, server]
            for src, dst, way in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self._pipe, args=(src, dst, way), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(1 << 16):
                self._counts[way] += len(data)
                limit = self._limits[way]
                if limit is not None and self._counts[way] > limit:
                    if way == "down":
                        self._stalled_clients.append(dst)
                    self.stalled.set()
                    self._released.wait(600)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if way == "up" and src in self._stalled_clients:
                self.stalled_link_closed.set()
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
