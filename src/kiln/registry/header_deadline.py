"""A deadline for a response's status line and headers.

httpx's timeouts are per socket read, so a server that sends its headers one byte at a
time, a little faster than the read timeout, holds a request forever (the body is
bounded elsewhere: ``kiln.util.pace``). While :func:`headers_within` is active on a
thread, every socket read that thread makes through a patched client is cut to the time
left, and fails once it is spent; ``send(..., stream=True)`` returns as soon as the
headers are in, so the deadline covers exactly them.

:func:`overall_deadline` bounds one request with all its retries (the ping that finds the
registry's scheme included): every ``headers_within`` inside it ends at the overall end at
the latest, and :func:`time_left` tells the retry loop whether another wait still fits
(containers/image has no such bound of its own; skopeo's ``--command-timeout`` cuts a whole
command's retries and waits the same way). Time spent sending a request's body counts
towards neither deadline: a large upload is not a registry that does not answer.

The reads are bounded by wrapping the network backend of the client's connection pools
(httpcore's ``NetworkBackend``); a client with a transport of the caller's own (tests'
``MockTransport``) is left as it is.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kiln.registry._lean_httpx import httpcore, httpx  # httpx without its CLI and trio
from kiln.util.cancel import cancel_flag, raise_if_cancelled, when_cancelled

if TYPE_CHECKING:
    import ssl


class _State(threading.local):
    deadline: float | None = None  # time.monotonic() when this thread's headers are late
    what: tuple[str, float] = ("", 0.0)  # the request, and its seconds, for the message
    end: float | None = None  # time.monotonic() when the whole request is late
    overall: tuple[str, float] = ("", 0.0)  # the request, and its overall seconds
    # the deadlines as this attempt began, and when it began sending (body time is free)
    base: tuple[float | None, float | None] = (None, None)
    sending_since: float | None = None


_state = _State()
_CANCEL_SLICE = 0.25  # seconds a read waits before it looks at the cancel flag again


@contextmanager
def headers_within(seconds: float, what: str) -> Iterator[None]:
    """Fail this thread's socket reads once ``seconds`` have passed (see the module)."""
    _state.deadline, _state.what = time.monotonic() + seconds, (what, seconds)
    _state.base, _state.sending_since = (_state.deadline, _state.end), None
    try:
        yield
    finally:
        _state.deadline, _state.sending_since = None, None


@contextmanager
def overall_deadline(seconds: float | None, what: str) -> Iterator[None]:
    """End this thread's ``headers_within`` deadlines, and its retries' waits, ``seconds``
    from now at the latest (None: no overall bound). Nested, the earlier end holds."""
    end = None if seconds is None else time.monotonic() + seconds
    saved = (_state.end, _state.overall)
    if end is not None and (saved[0] is None or end < saved[0]):
        _state.end, _state.overall = end, (what, float(seconds or 0))
    try:
        yield
    finally:
        _state.end, _state.overall = saved


def time_left() -> float | None:
    """Seconds left of this thread's :func:`overall_deadline`; None when there is none."""
    return None if _state.end is None else _state.end - time.monotonic()


def overall_seconds() -> float:
    """The seconds this thread's :func:`overall_deadline` was opened with (0: none)."""
    return _state.overall[1] if _state.end is not None else 0.0


def _connect_within(timeout: float | None) -> float | None:
    """A connect or TLS handshake ends by the overall deadline too."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        what, seconds = _state.overall
        raise httpcore.ConnectTimeout(f"{what}: not connected within the deadline of "
                                      f"{seconds:g} s for all attempts")  # fmt: skip
    return left if timeout is None else min(timeout, left)


def _limit() -> tuple[float | None, bool]:
    """The earlier of this attempt's and the overall deadline, and whether it is the overall."""
    deadline, end = _state.deadline, _state.end
    if deadline is None:
        return None, False
    if end is not None and end < deadline:
        return end, True
    return deadline, False


def _spent(overall: bool = False) -> httpcore.ReadTimeout:
    if overall:
        what, seconds = _state.overall
        return httpcore.ReadTimeout(
            f"{what}: no complete response headers within the deadline of {seconds:g} s "
            "for all attempts"
        )
    what, seconds = _state.what
    return httpcore.ReadTimeout(f"{what}: no complete response headers after {seconds:g} s")


def _bounded(timeout: float | None) -> float | None:
    limit, overall = _limit()
    if limit is None:
        return timeout
    left = limit - time.monotonic()
    if left <= 0:
        raise _spent(overall)
    return left if timeout is None else min(timeout, left)


def _sent(started: float) -> None:
    """Move this attempt's deadlines on by the time spent sending since ``started``."""
    if _state.deadline is None:
        return
    since = _state.sending_since = _state.sending_since or started
    spent = time.monotonic() - since
    deadline, end = _state.base
    if deadline is not None:
        _state.deadline = deadline + spent
    if end is not None and _state.end is not None:
        _state.end = max(_state.end, end + spent)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._cancellable_read(max_bytes, _bounded(timeout))
        except httpcore.ReadTimeout:
            limit, overall = _limit()
            if limit is not None and time.monotonic() >= limit:
                raise _spent(overall) from None
            raise

    def _cancellable_read(self, max_bytes: int, timeout: float | None) -> bytes:
        """A read of at most ``timeout`` seconds that, under a cancel flag
        (``kiln.util.cancel``), waits in slices and raises Cancelled once it is set."""
        flag = cancel_flag()
        if flag is None:
            return self._inner.read(max_bytes, timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            raise_if_cancelled(flag)
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.ReadTimeout("timed out")
            try:
                return self._inner.read(
                    max_bytes, _CANCEL_SLICE if left is None else min(left, _CANCEL_SLICE)
                )
            except httpcore.ReadTimeout:
                if end is not None and time.monotonic() >= end:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        started = time.monotonic()
        flag = cancel_flag()
        sock = None if flag is None else self._inner.get_extra_info("socket")
        if flag is None or sock is None:
            self._inner.write(buffer, timeout)
        else:
            _cancellable_write(sock, buffer, timeout, flag)
        _sent(started)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:  # fmt: skip
        """The TLS handshake, which a server that accepts and never answers holds to the
        connect timeout: under a cancel flag the connection is shut down once it is set
        (through a duplicate of the socket: wrapping it for TLS detaches the original)."""
        timeout = _connect_within(timeout)
        sock = self._inner.get_extra_info("socket")
        twin = sock.dup() if sock is not None and cancel_flag() is not None else None
        try:
            with when_cancelled(lambda: _shut_down(twin)) as flag:
                try:
                    return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))
                except Exception:
                    raise_if_cancelled(flag)  # the shut-down socket failed the handshake
                    raise
        finally:
            if twin is not None:
                twin.close()

    def get_extra_info(self, info: str) -> Any:  # httpcore's type: it depends on info
        return self._inner.get_extra_info(info)


def _cancellable_write(
    sock: socket.socket, buffer: bytes, timeout: float | None, flag: threading.Event
) -> None:
    """httpcore's write (``send`` until all is gone, each waiting at most ``timeout``) in
    slices that look at the cancel flag: an upload the registry stopped taking mid-body
    ends once the flag is set. A slice that sent nothing is retried with the same bytes,
    as a TLS socket requires."""
    view = memoryview(buffer)
    end = None if timeout is None else time.monotonic() + timeout
    try:
        while view:
            raise_if_cancelled(flag)
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.WriteTimeout("timed out")
            sock.settimeout(_CANCEL_SLICE if left is None else min(left, _CANCEL_SLICE))
            try:
                sent = sock.send(view)
            except TimeoutError:
                continue
            view = view[sent:]
            end = None if timeout is None else time.monotonic() + timeout
    except OSError as exc:
        raise httpcore.WriteError(exc) from exc


def _shut_down(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_SocketOptions = Iterable[httpcore.SOCKET_OPTION] | None


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: _SocketOptions = None) -> httpcore.NetworkStream:  # fmt: skip
        timeout = _connect_within(timeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: _SocketOptions = None) -> httpcore.NetworkStream:  # fmt: skip
        timeout = _connect_within(timeout)
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_header_reads(client: httpx.Client) -> bool:
    """Make ``client``'s own connection pools honour :func:`headers_within`; False when
    it has none (a transport of the caller's)."""
    transports = [client._transport, *client._mounts.values()]  # private: see the module
    patched = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if pool is not None and backend is not None and not isinstance(backend, _Backend):
            pool._network_backend = _Backend(backend)
            patched = True
    return patched
