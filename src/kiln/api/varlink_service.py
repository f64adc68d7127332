"""The ``io.podman`` varlink service: kiln errors -> interface errors, and streamed calls.

:mod:`.varlink_podman` composes the service (``make_service``) from
:class:`PodmanImageService` here and the methods in :mod:`.varlink_images` (the
store) and :mod:`.varlink_transfer` (builds, registries, archives). Each call opens its own store context, as an HTTP request
does.

Errors: every method runs inside :func:`varlink_errors`, so a kiln error becomes
``io.podman.ErrorOccurred(reason)`` with kiln's one-line message, an unknown image
``io.podman.ImageNotFound(id, reason)`` (methods that name an image look it up
with :func:`find_image` first), an unknown working container
``io.podman.ContainerNotFound``, an OS error on a path the call named (or a NUL in
it) ``ErrorOccurred`` saying so; anything else is logged and answered as
``ErrorOccurred("internal error in kiln: ...")`` — never a traceback to the client.

Streaming (:func:`streamed`): the use case runs in a worker thread; its events
become log lines. Called with ``more``, each batch of lines goes out as a
``MoreResponse`` reply flagged ``continues`` and the last reply carries the ID;
called without, one reply carries every line and the ID. The worker waits on a
bounded queue, so a slow client slows the work. When the client hangs up (seen
on the socket while waiting) or the server stops, the cancel flag is set: the
next event the work emits raises ``Cancelled``, a build stops its RUN, and the
worker's own ``finally`` blocks clean up before the call ends.
"""

from __future__ import annotations

import functools
import inspect
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import varlink

from kiln.errors import Cancelled, InvalidArgument, KilnError, NotFound
from kiln.ops.config import Config
from kiln.ops.context import Context, open_context
from kiln.ops.events import Event
from kiln.util.cancel import cancelled_by

from .render import stream_message

log = logging.getLogger("kiln.api")

INTERFACE = "io.podman"
QUEUE_ITEMS = 64
LINES_PER_REPLY = 32
WAIT_SECONDS = 0.25


# -- errors ------------------------------------------------------------------------------------


class PodmanError(varlink.VarlinkError):
    """An ``io.podman`` error reply."""

    def __init__(self, name: str, **parameters: Any):
        super().__init__({"error": f"{INTERFACE}.{name}", "parameters": parameters})


def error_occurred(reason: str) -> PodmanError:
    return PodmanError("ErrorOccurred", reason=reason)


def image_not_found(name: str, reason: str = "") -> PodmanError:
    return PodmanError("ImageNotFound", id=name, reason=reason or f"{name}: image not known")


def container_not_found(name: str, reason: str = "") -> PodmanError:
    return PodmanError(
        "ContainerNotFound", id=name, reason=reason or f"{name}: no such working container"
    )


def as_varlink_error(exc: BaseException) -> varlink.VarlinkError:
    if isinstance(exc, varlink.VarlinkError):
        return exc
    if isinstance(exc, KilnError):
        return error_occurred(str(exc) or type(exc).__name__)
    if isinstance(exc, OSError) and exc.strerror:  # a path the call named (too long, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        return error_occurred(f"{where}{exc.strerror}")
    if isinstance(exc, ValueError) and "embedded null byte" in str(exc):
        return error_occurred("a path or name must not contain a NUL character")
    log.error("varlink: unexpected error", exc_info=exc)
    return error_occurred(f"internal error in kiln: {type(exc).__name__}: {exc}")


def varlink_errors(fn: Callable) -> Callable:
    """Wrap a method (plain or generator) so every failure is an ``io.podman`` error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - answered as a varlink error
                raise as_varlink_error(exc) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - answered as a varlink error
            raise as_varlink_error(exc) from None

    return wrapper


def find_image(ctx: Context, name: str) -> Any:
    """The store's record for ``name``; ``ImageNotFound`` when there is none, as podman
    answered any failed lookup (an empty name or one that is no reference too)."""
    if not name:
        raise image_not_found(name, "an image name or ID is required")
    try:
        return ctx.store.resolve_image(name)
    except (NotFound, InvalidArgument) as exc:
        raise image_not_found(name, str(exc)) from None


def find_container(ctx: Context, name: str) -> Any:
    if not name:
        raise error_occurred("a working container name or ID is required")
    try:
        return ctx.store.find_container(name)
    except NotFound as exc:
        raise container_not_found(name, str(exc)) from None


def bare_id(image_id: str) -> str:
    """podman's varlink IDs are 64 hex digits without ``sha256:``."""
    return image_id.removeprefix("sha256:")


# -- streaming ---------------------------------------------------------------------------------


class _Feed:
    """The worker's event sink: log lines go to the caller's queue, with backpressure."""

    def __init__(self, q: queue.Queue, cancel: threading.Event, quiet: bool):
        self.q, self.cancel, self.quiet = q, cancel, quiet

    def emit(self, event: Event) -> None:
        if self.cancel.is_set():
            raise Cancelled("the varlink client went away; the operation was cancelled")
        for obj in stream_message(event, quiet=self.quiet) or _result_line(event, self.quiet):
            self.put(("line", obj["stream"]))

    def put(self, item: tuple[str, Any]) -> None:
        while True:
            if self.cancel.is_set():
                raise Cancelled("the varlink client went away; the operation was cancelled")
            try:
                self.q.put(item, timeout=WAIT_SECONDS)
                return
            except queue.Full:
                continue


def _result_line(event: Event, quiet: bool) -> list[dict[str, str]]:
    """Result events (``Loaded image: x``, the built image's ID) are log lines too."""
    if event.kind != "result" or not event.message or quiet:
        return []
    text = event.message
    return [{"stream": text if text.endswith("\n") else text + "\n"}]


def peer_gone(conn: Any) -> bool:
    """Has the client hung up? (readable with nothing to read, or an error)."""
    if not isinstance(conn, socket.socket) or conn.fileno() < 0:
        return False
    mask = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
    poller = select.poll()
    poller.register(conn, mask | select.POLLIN)
    events = poller.poll(0)
    if not events:
        return False
    flags = events[0][1]
    if flags & mask:
        return True
    try:  # readable: a new message (a protocol error mid-call) or EOF
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def streamed(
    service: PodmanImageService,
    work: Callable[[Context, threading.Event], str],
    more: bool,
    conn: Any,
    quiet: bool = False,
) -> Iterator[dict[str, Any]]:
    """Run ``work(ctx, cancel) -> id`` in a thread; yield ``{"reply": MoreResponse}`` dicts
    (the caller renames the key to its method's return name)."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
    cancel = threading.Event()
    feed = _Feed(q, cancel, quiet)

    def run() -> None:
        try:
            # a registry's socket reads end with the call too (kiln.util.cancel)
            with cancelled_by(cancel), service.context(feed) as ctx:
                result = work(ctx, cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            item: tuple[str, Any] = ("error", exc)
        else:
            item = ("done", result)
        try:
            feed.put(item)
        except Cancelled:
            pass

    worker = threading.Thread(target=run, name="kiln-varlink-work", daemon=True)
    worker.start()
    lines: list[str] = []
    try:
        while True:
            try:
                kind, value = q.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                if service.stopping.is_set():
                    raise Cancelled("kiln is shutting down; the operation was cancelled") from None
                if peer_gone(conn):
                    cancel.set()
                    return
                if more and lines:
                    yield {"logs": lines, "id": "", "_continues": True}
                    lines = []
                continue
            if kind == "line":
                lines.append(value)
                if more and (len(lines) >= LINES_PER_REPLY or q.empty()):
                    yield {"logs": lines, "id": "", "_continues": True}
                    lines = []
                continue
            if kind == "error":
                raise value
            yield {"logs": lines, "id": value or ""}
            return
    finally:
        cancel.set()
        worker.join()


def replies(name: str, stream: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``streamed`` replies under the method's return name (``image`` or ``reply``)."""
    for r in stream:
        more = r.pop("_continues", False)
        yield {name: r, "_continues": True} if more else {name: r}


class PodmanImageService:
    """Shared state of the ``io.podman`` methods: the config and the stop flag."""

    def __init__(self, config: Config, stopping: threading.Event | None = None):
        self.config = config
        self.stopping = stopping or threading.Event()

    @contextmanager
    def context(self, events: Any = None) -> Iterator[Context]:
        with open_context(self.config.root, events=events, config=self.config) as ctx:
            yield ctx

    def call(self, fn: Callable[[Context], Any]) -> Any:
        with self.context() as ctx:
            return fn(ctx)


__all__ = [
    "INTERFACE",
    "PodmanError",
    "PodmanImageService",
    "bare_id",
    "container_not_found",
    "error_occurred",
    "find_container",
    "find_image",
    "image_not_found",
    "peer_gone",
    "replies",
    "streamed",
    "varlink_errors",
]
