"""``kiln serve``: listen on unix sockets and TCP addresses and serve the API.

- ``unix:///path``: the socket is created with mode 0660 (a stale socket file
  is replaced; its directory is created).
- ``tcp://host:port``: loopback addresses are served as they are; any other
  address is refused unless TLS with client certificates is configured
  (``tlsverify`` with CA, certificate and key), as dockerd requires.
- HTTP is parsed by httptools (``kiln[server]`` installs it; uvicorn falls back to h11
  without it): it costs a sixth less CPU per small request. The two differ only in the
  case of the ``connection``/``transfer-encoding`` header names uvicorn writes, and in
  the date and length headers of the 400 for a malformed request.
- One uvicorn server per listener, all in one event loop; SIGINT/SIGTERM stop
  accepting, cancel the streamed operations in flight (a build's RUN is killed, its
  mounts and leases go; the response ends with the error), cut off clients that stopped
  reading (``kiln.api.blocked_sends``), let other requests finish (a second signal
  forces; the cancelled work still cleans up before the process exits), and exit.
- ``idle_timeout`` > 0: exit after that many seconds with no request in flight.
- Once every listener listens, the build engine loads on a thread of its own
  (``kiln.api.warm_up``): the first build does not pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import resource
import signal
import socket
import ssl
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from kiln.errors import InvalidArgument, Unavailable
from kiln.ops.config import Config
from kiln.util.lazy_dataclass import dataclass
from kiln.util.redact import RedactingFilter
from kiln.util.rootless import is_rootless, runtime_base

from . import heap, warm_up
from .app import Activity, create_app
from .blocked_sends import end_blocked_sends
from .one_send import http_protocol
from .streaming import cancel_in_flight
from .unix_socket import bind_unix
from .varlink_server import VarlinkListener

log = logging.getLogger("kiln.api")
DEFAULT_HOST = "unix:///run/kiln/kiln.sock"


def default_host() -> str:
    """Root's ``DEFAULT_HOST``; a rootless user's socket is under ``$XDG_RUNTIME_DIR/kiln``
    (else ``<tmp>/kiln-run-<uid>/kiln``), as podman's ``$XDG_RUNTIME_DIR/podman``."""
    if not is_rootless():
        return DEFAULT_HOST
    return "unix://" + os.path.join(runtime_base(), "kiln", "kiln.sock")


GRACE_SECONDS = 30


@dataclass(frozen=True)
class TLSOptions:
    verify: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)

    @property
    def requires_client_certs(self) -> bool:
        return self.verify and bool(self.cacert) and self.enabled


@dataclass(frozen=True)
class Listener:
    kind: str  # "unix" | "tcp"
    address: str  # socket path, or host
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{host}:{self.port}"


def parse_host(value: str) -> Listener:
    """``unix:///path``, ``tcp://host:port`` (or a bare ``/path``) -> a Listener."""
    if value.startswith("/"):
        value = "unix://" + value
    parts = urlsplit(value)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path.startswith("/"):
            raise InvalidArgument(f'--host "{value}": a unix socket needs an absolute path')
        return Listener("unix", path)
    if parts.scheme in ("tcp", "http"):
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise InvalidArgument(f'--host "{value}": {exc}') from None
        if not host:
            raise InvalidArgument(f'--host "{value}": give tcp://HOST:PORT')
        return Listener("tcp", host, port if port is not None else 2375)
    raise InvalidArgument(
        f'--host "{value}": unsupported address; use unix:///path or tcp://HOST:PORT'
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(listeners: list[Listener], tls: TLSOptions) -> None:
    """Refuse to serve beyond loopback without client-certificate TLS."""
    if tls.verify and not tls.requires_client_certs:
        raise InvalidArgument("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    for lst in listeners:
        if lst.kind == "tcp" and not is_loopback(lst.address) and not tls.requires_client_certs:
            raise InvalidArgument(
                f"refusing to listen on {lst}: a TCP address beyond loopback gives anyone "
                "who can reach it control of kiln; use --tlsverify with --tlscacert, "
                "--tlscert and --tlskey to require client certificates, or listen on "
                "127.0.0.1 or a unix socket"
            )


def bind_tcp(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidArgument(f"cannot resolve {host}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on tcp://{host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_async` and says when
    its start-up is over (``listening``; ``started`` says whether it listens)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


def _uvicorn_config(app, tls: TLSOptions | None) -> uvicorn.Config:
    kwargs: dict = {}
    if tls is not None and tls.enabled:
        kwargs = dict(ssl_certfile=tls.cert, ssl_keyfile=tls.key)
        if tls.cacert:
            kwargs["ssl_ca_certs"] = tls.cacert
        if tls.verify:
            kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACE_SECONDS,
        ws="none",
        http=http_protocol(),  # a small response in one send (kiln.api.one_send)
        server_header=False,
        **kwargs,
    )


async def serve_async(
    hosts: list[str],
    config: Config,
    tls: TLSOptions = TLSOptions(),
    idle_timeout: float = 0.0,
    ready=None,
    varlink: str | None = None,
) -> None:
    """``varlink``: also serve podman's varlink image API (``unix:PATH``); alone when
    no ``hosts`` are given."""
    listeners = [parse_host(h) for h in (hosts or ([] if varlink else [default_host()]))]
    check_exposure(listeners, tls)
    activity = Activity()
    app = create_app(config, activity)
    # what start-up made (modules, routes) lives as long as the server: the cyclic GC's full
    # passes skip it (one took 30-45 ms on a busy machine, a pause for every request)
    gc.freeze()
    socks: list[tuple[Listener, socket.socket]] = []
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    varlink_listener = _varlink_listener(varlink, config, activity, loop)
    try:
        for lst in listeners:
            if lst.kind == "unix":
                socks.append((lst, bind_unix(lst.address)))
            else:
                socks.append((lst, bind_tcp(lst.address, lst.port)))
        servers = []
        tasks: list[asyncio.Future[Any]] = []
        for lst, sock in socks:
            server = _Server(_uvicorn_config(app, tls if lst.kind == "tcp" else None))
            servers.append(server)
            tasks.append(asyncio.ensure_future(server.serve(sockets=[sock])))
            log.info("kiln API listening on %s", lst)
        if varlink_listener is not None:
            varlink_listener.start()
            tasks.append(asyncio.ensure_future(stopped.wait()))
            log.info("kiln varlink API (io.podman) listening on %s", varlink_listener)

        ending: list[asyncio.Future[Any]] = []

        def stop(sig: int | None = None) -> None:
            stopped.set()
            # builds, saves and pulls in flight end now, through their cancel paths, and
            # clients that stopped reading are cut off: the stop takes seconds, not the grace
            cancelled = cancel_in_flight(loop)
            if cancelled and not ending:
                log.info("stopping: cancelled %d operation(s) in flight", cancelled)
            if not ending:
                ending.append(asyncio.ensure_future(end_blocked_sends(servers)))
            for s in servers:
                if s.should_exit:
                    s.force_exit = True
                s.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop, sig)
        if ready is not None:
            ready()
        watcher = asyncio.ensure_future(_idle_watch(activity, idle_timeout, stop))
        warming = asyncio.ensure_future(_warm_up_once_listening(servers))
        try:
            await asyncio.gather(*tasks)
        finally:
            watcher.cancel()
            warming.cancel()
            for task in ending:
                task.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    finally:
        if varlink_listener is not None:
            await loop.run_in_executor(None, varlink_listener.close)
        for lst, sock in socks:
            sock.close()
            if lst.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(lst.address)
        log.info("kiln API stopped")


def _varlink_listener(address: str | None, config: Config, activity: Activity, loop):
    """The varlink listener (not yet started), or None; its calls count as activity."""
    if not address:
        return None

    def on_call(delta: int) -> None:
        def count() -> None:
            activity.active += delta
            if delta < 0:
                activity.last = time.monotonic()

        loop.call_soon_threadsafe(count)

    return VarlinkListener(address, config, on_call=on_call)


async def _warm_up_once_listening(servers: list[_Server]) -> None:
    """Start loading the build engine when the API servers listen (not before: start-up
    stays as short as it was); a varlink-only server, which does not build, never does."""
    for server in servers:
        await server.listening.wait()
    if servers and all(s.started for s in servers):
        warm_up.start()


async def _idle_watch(activity: Activity, idle_timeout: float, stop) -> None:
    if idle_timeout <= 0:
        return
    while True:
        await asyncio.sleep(min(0.5, idle_timeout / 4))
        if activity.idle_for() >= idle_timeout:
            log.info("no requests for %gs: exiting", idle_timeout)
            stop()
            return


def setup_access_log(destination: str | None) -> None:
    """Write the access log to stderr (``-``), a file, or nowhere (None/empty)."""
    logger = logging.getLogger("kiln.api.access")
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
    if not destination:
        logger.setLevel(logging.CRITICAL + 1)
        return
    handler: logging.Handler
    if destination == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(destination)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.addFilter(RedactingFilter())  # query strings may carry user:password@ references
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard one, as Go programs (dockerd) do at
    start: every client connection is a file descriptor, and at a soft limit of 1024 (a
    common default) a thousand idle clients left none for the next one, whose connection
    then waited unanswered until the head deadline freed some. RUN's processes get their
    own limits (``kiln.runtime.spec``). The soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def serve(
    hosts: list[str],
    config: Config,
    tls: TLSOptions = TLSOptions(),
    idle_timeout: float = 0.0,
    access_log: str | None = "-",
    varlink: str | None = None,
) -> None:
    """Serve until a signal (or ``idle_timeout``) stops it."""
    setup_access_log(access_log)
    heap.limit_arenas()
    raise_fd_limit()
    asyncio.run(serve_async(hosts, config, tls=tls, idle_timeout=idle_timeout, varlink=varlink))


__all__ = [
    "DEFAULT_HOST",
    "default_host",
    "Listener",
    "TLSOptions",
    "check_exposure",
    "is_loopback",
    "parse_host",
    "serve",
    "serve_async",
]
