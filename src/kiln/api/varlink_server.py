"""``kiln serve --varlink unix:PATH``: the varlink listener for the ``io.podman`` image service.

varlink messages are JSON objects ended by a NUL byte; a connection carries one
call at a time, and a call made with ``more`` may get several replies. The
listener accepts on a unix socket (mode 0660, as the HTTP listener's), serves
each connection in its own thread (at most ``MAX_CONNECTIONS`` at once) and
checks each ``io.podman`` call's parameters against ``io.podman.varlink``
(:mod:`.varlink_params`: a wrong type or unknown field is ``InvalidParameter``
naming it, a left-out one its zero value) and hands it to the ``varlink``
package's ``Service``, which answers ``org.varlink.service`` itself (GetInfo,
GetInterfaceDescription).

A message that is not a JSON object (parsed strictly: no duplicate keys, nesting
at most 128 deep), or larger than ``MAX_MESSAGE`` bytes, closes the connection (the
varlink way of refusing a broken peer). So does a connection that does not complete
a message within ``KILN_API_HEADER_SECONDS`` (60) of connecting or of its last answer,
as the HTTP listener's deadline for a request's head: 64 clients that connected and
sent nothing held every connection slot, and every other client was refused, for as
long as they liked. A client that goes
away mid-stream only ends its own call: the streaming method sees the hang-up,
cancels its work and the connection thread ends; the server keeps serving.
``close()`` stops accepting, cancels calls in flight and waits for them.

The ``varlink`` package is imported here, and this module only when
``--varlink`` is given: ``import kiln`` and ``kiln --help`` never load it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from kiln.errors import InvalidArgument, Unavailable
from kiln.oci import strict_json
from kiln.ops.config import Config

from .request_deadline import header_seconds
from .unix_socket import bind_unix

log = logging.getLogger("kiln.api")

MAX_MESSAGE = 8 << 20  # one call's JSON; a BuildInfo is a few KiB
MAX_CONNECTIONS = 64
POLL_SECONDS = 0.5
GRACE_SECONDS = 30.0
# at a stop, a send to a client blocked this long (it stopped reading a streamed call) is
# ended by shutting the connection down: it held its call, and the stop, for the grace
STUCK_SEND_SECONDS = 2.0
SEND_SECONDS = 120.0  # a client that reads nothing for this long is dropped


def parse_varlink_address(value: str) -> str:
    """``unix:/path`` (varlink's spelling; ``unix:///path`` too) -> the socket path."""
    if not value.startswith("unix:"):
        raise InvalidArgument(
            f'--varlink "{value}": kiln serves varlink on a unix socket; give unix:/PATH'
        )
    path = value[len("unix:") :].split(";", 1)[0]
    if path.startswith("//"):
        path = path[2:]
    if path.startswith("@"):
        raise InvalidArgument(f'--varlink "{value}": abstract sockets are not supported')
    if not path.startswith("/"):
        raise InvalidArgument(f'--varlink "{value}": the socket needs an absolute path')
    return path


class VarlinkListener:
    """Serves ``io.podman`` on one unix socket from background threads."""

    def __init__(
        self,
        address: str,
        config: Config,
        on_call: Callable[[int], None] | None = None,
    ):
        self.path = parse_varlink_address(address)
        self.config = config
        self._on_call = on_call or (lambda delta: None)
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._sending: dict[socket.socket, float] = {}  # connection -> when its send began
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None
        try:  # the varlink package is optional: imported only when --varlink is used
            from .varlink_podman import make_service
        except ImportError as exc:
            raise Unavailable(
                f"--varlink needs the varlink package ({exc}): install kiln[server]"
            ) from None
        self.service = make_service(config, self._stopping)

    def __str__(self) -> str:
        return f"unix:{self.path}"

    def start(self) -> None:

        self._sock = bind_unix(self.path)
        self._sock.listen(socket.SOMAXCONN)  # a burst of clients waits, never EAGAIN at 16
        self._sock.settimeout(POLL_SECONDS)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="kiln-varlink-accept", daemon=True
        )
        self._acceptor.start()

    def close(self, grace: float = GRACE_SECONDS) -> None:
        """Stop accepting; calls in flight are cancelled and waited for (``grace`` at most);
        a connection whose send has been blocked for ``STUCK_SEND_SECONDS`` is shut down."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            while t.is_alive() and (left := deadline - time.monotonic()) > 0:
                t.join(timeout=min(POLL_SECONDS, left))
                self._shut_down_stuck_sends()

    def _shut_down_stuck_sends(self) -> None:
        """Shut down the connections whose client has not taken a reply for
        ``STUCK_SEND_SECONDS``: their send fails, which cancels their call."""
        now = time.monotonic()
        with self._lock:
            stuck = [c for c, began in self._sending.items() if now - began > STUCK_SEND_SECONDS]
        for conn in stuck:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- connections ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            conn.set_inheritable(False)
            with self._lock:
                if len(self._threads) >= MAX_CONNECTIONS:
                    log.warning("varlink: %d connections open; refusing one", MAX_CONNECTIONS)
                    conn.close()
                    continue
                t = threading.Thread(
                    target=self._serve_connection, args=(conn,), name="kiln-varlink", daemon=True
                )
                self._threads.add(t)
            t.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        seconds = header_seconds()
        try:
            with conn:
                conn.settimeout(POLL_SECONDS)
                buf = bytearray()
                deadline = time.monotonic() + seconds
                while not self._stopping.is_set():
                    if time.monotonic() > deadline:
                        log.warning("varlink: no whole message in %gs; closing", seconds)
                        return
                    try:
                        data = conn.recv(1 << 16)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    scanned = len(buf)  # only the new bytes can hold a NUL
                    buf += data
                    while (end := buf.find(b"\0", scanned)) >= 0:
                        message = bytes(buf[:end])
                        del buf[: end + 1]
                        scanned = 0
                        if not self._answer(conn, message):
                            return
                        deadline = time.monotonic() + seconds
                    if len(buf) > MAX_MESSAGE:
                        log.warning("varlink: a message over %d bytes; closing", MAX_MESSAGE)
                        return
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _sendall_watched(self, conn: socket.socket, data: bytes) -> None:
        """``conn.sendall(data)``, noted in ``_sending`` while it lasts (see ``close``)."""
        with self._lock:
            self._sending[conn] = time.monotonic()
        try:
            conn.sendall(data)
        finally:
            with self._lock:
                del self._sending[conn]

    def _answer(self, conn: socket.socket, message: bytes) -> bool:
        """Answer one call; False when the connection must close."""
        try:
            call = strict_json.parse(message)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return False
        if not isinstance(call, dict) or not isinstance(call.get("method", ""), str):
            return False
        if not isinstance(call.get("parameters") or {}, dict):
            return False
        # both need the optional varlink package
        from .varlink_params import BadParameter, checked_call
        from .varlink_service import INTERFACE

        if str(call.get("method", "")).rpartition(".")[0] == INTERFACE:
            try:
                call = checked_call(self.service.interfaces[INTERFACE], call)
            except BadParameter as bad:
                return call.get("oneway") is True or self._send(conn, invalid_parameter(bad.path))
        message = json.dumps(call).encode()
        self._on_call(1)
        replies = self.service.handle(message, _request=conn)
        try:
            conn.settimeout(SEND_SECONDS)
            oneway = call.get("oneway") is True  # the call runs to its end; nothing is sent
            for reply in replies:  # (the package sends a streamed method's replies even so)
                if reply is not None and not oneway:
                    self._sendall_watched(conn, reply + b"\0")
            return True
        except OSError:
            return False  # gone or not reading; closing the replies cancels the work
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            log.error("varlink: answering %s failed", call.get("method"), exc_info=exc)
            return False
        finally:
            replies.close()
            conn.settimeout(POLL_SECONDS)
            self._on_call(-1)

    def _send(self, conn: socket.socket, reply: bytes) -> bool:
        try:
            conn.settimeout(SEND_SECONDS)
            conn.sendall(reply + b"\0")
            return True
        except OSError:
            return False
        finally:
            conn.settimeout(POLL_SECONDS)


def invalid_parameter(path: str) -> bytes:
    """The varlink spec's reply to a parameter of the wrong type or name."""
    error = {"error": "org.varlink.service.InvalidParameter", "parameters": {"parameter": path}}
    return json.dumps(error).encode()


__all__ = ["VarlinkListener", "invalid_parameter", "parse_varlink_address"]
