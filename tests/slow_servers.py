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
        self._stalled_uploads: list[socket.socket] = []
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
                    else:
                        self._stalled_uploads.append(src)
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

    @property
    def down_held(self) -> bool:
        """Whether the server's answers are what the proxy holds (else the client's upload)."""
        return self._limits["down"] is not None

    def wait_upload_blocked(self, timeout: float) -> bool:
        """After ``stalled`` (up): wait until the client's sending has come to rest against
        the held link (what is queued at both ends the same across half a second): it sits
        in a write the link will never take, or, when all it sent fit in the queues, in the
        read of an answer that will never come."""
        end, last, same = time.monotonic() + timeout, None, 0
        while time.monotonic() < end:
            now = [_queued(s, to_peer=False) for s in self._stalled_uploads]
            same = same + 1 if now and now == last and all(q is not None for q in now) else 0
            if same >= 10:
                return True
            last = now
            time.sleep(0.05)
        return False

    def wait_client_drained(self, timeout: float) -> bool:
        """After ``stalled`` (down): wait until the client has read every byte that passed,
        so it sits in a read the link will never answer (the kernel's queues of both ends
        of the held connection are empty, as /proc/net/tcp shows them)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._stalled_clients and all(
                _queued(s, to_peer=True) in (None, (0, 0)) for s in self._stalled_clients
            ):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.release()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()


def _tcp_name(addr: tuple[str, int]) -> str:
    """``addr`` (IPv4) as /proc/net/tcp writes it: little-endian hex address, hex port."""
    packed = socket.inet_aton(addr[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{addr[1]:04X}"


def _queued(sock: socket.socket, *, to_peer: bool) -> tuple[int, int] | None:
    """The bytes queued on one way of ``sock``'s connection (both ends on this host, IPv4),
    as (the sender's send queue, the receiver's receive queue): from ``sock`` to its peer
    with ``to_peer``, else from the peer to ``sock``; None once either end is gone."""
    try:
        own, peer = _tcp_name(sock.getsockname()), _tcp_name(sock.getpeername())
    except OSError:
        return None
    queues = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            tx, rx = (int(q, 16) for q in fields[4].split(":"))
            queues[(fields[1], fields[2])] = (tx, rx)
    mine, theirs = queues.get((own, peer)), queues.get((peer, own))
    if mine is None or theirs is None:
        return None
    return (mine[0], theirs[1]) if to_peer else (theirs[0], mine[1])


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and reads what comes, but never
    answers a byte: a git daemon, a token server or a registry that hangs. ``wait_asked``
    waits until ``n`` clients have sent their request, so they sit waiting for an answer;
    ``wait_all_gone`` until every client has closed its end."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Condition()
        self._asked = 0
        self._open = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with self._lock:
            self._open += 1
        asked = False
        try:
            while conn.recv(1 << 16):
                if not asked:
                    asked = True
                    with self._lock:
                        self._asked += 1
                        self._lock.notify_all()
        except OSError:
            pass
        with self._lock:
            self._open -= 1
            self._lock.notify_all()

    def wait_asked(self, n: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._asked >= n, timeout)

    def wait_all_gone(self, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._open == 0, timeout)

    def close(self) -> None:
        for sock in [self._listener, *self._conns]:
            with contextlib.suppress(OSError):
                sock.close()
