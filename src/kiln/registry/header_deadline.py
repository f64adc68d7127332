"""A deadline for a response's status line and headers.

httpx's timeouts are per socket read, so a server that sends its headers one byte at a
time, a little faster than the read timeout, holds a request forever (the body is
bounded elsewhere: ``kiln.util.pace``). While :func:`headers_within` is active on a
thread, every socket read that thread makes through a patched client is cut to the time
left, and fails once it is spent; ``send(..., stream=True)`` returns as soon as the
headers are in, so the deadline covers exactly them.

The reads are bounded by wrapping the network backend of the client's connection pools
(httpcore's ``NetworkBackend``); a client with a transport of the caller's own (tests'
``MockTransport``) is left as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    import ssl


class _State(threading.local):
    deadline: float | None = None  # time.monotonic() when this thread's headers are late
    what: tuple[str, float] = ("", 0.0)  # the request, and its seconds, for the message


_state = _State()


@contextmanager
def headers_within(seconds: float, what: str) -> Iterator[None]:
    """Fail this thread's socket reads once ``seconds`` have passed (see the module)."""
    _state.deadline, _state.what = time.monotonic() + seconds, (what, seconds)
    try:
        yield
    finally:
        _state.deadline = None


def _spent() -> httpcore.ReadTimeout:
    what, seconds = _state.what
    return httpcore.ReadTimeout(f"{what}: no complete response headers after {seconds:g} s")


def _bounded(timeout: float | None) -> float | None:
    deadline = _state.deadline
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise _spent()
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, _bounded(timeout))
        except httpcore.ReadTimeout:
            deadline = _state.deadline
            if deadline is not None and time.monotonic() >= deadline:
                raise _spent() from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:  # fmt: skip
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:  # httpcore's type: it depends on info
        return self._inner.get_extra_info(info)


_SocketOptions = Iterable[httpcore.SOCKET_OPTION] | None


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: _SocketOptions = None) -> httpcore.NetworkStream:  # fmt: skip
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: _SocketOptions = None) -> httpcore.NetworkStream:  # fmt: skip
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
