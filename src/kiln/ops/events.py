"""Typed progress events and the sinks that receive them.

Use cases never print: they describe what happens as :class:`Event` values and
hand them to ``ctx.events``. Front ends decide how to show them (the CLI renders
rich/plain/JSON lines, the API streams JSON, tests collect them in a list).

Kinds (a small closed vocabulary; ``data`` carries the details):

- ``step``      a phase begins ("Copying blob sha256:...", "Writing manifest")
- ``progress``  bytes moved: data ``{"id", "current", "total"}``
- ``output``    text a process or operation produced, as-is
- ``warning``   something the user should know; the operation goes on
- ``result``    a final line a front end prints, e.g. ``Loaded image: x``;
                data holds the machine-readable value
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import field
from typing import Any, Protocol

from kiln.errors import Cancelled
from kiln.util.lazy_dataclass import dataclass

STEP = "step"
PROGRESS = "progress"
OUTPUT = "output"
WARNING = "warning"
RESULT = "result"
KINDS = frozenset({STEP, PROGRESS, OUTPUT, WARNING, RESULT})


@dataclass(frozen=True)
class Event:
    """One progress or log event of an operation."""

    kind: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.data:
            out["data"] = self.data
        return out


class EventSink(Protocol):
    """Where a context's events go: anything with ``emit(event)`` (``CallbackSink`` wraps
    a function). It is called from the thread doing the work, several at once in a build."""

    def emit(self, event: Event) -> None: ...


class NullSink:
    """Drops every event."""

    def emit(self, event: Event) -> None:
        return None


class ListSink:
    """Keeps every event, for tests and for callers that want them afterwards."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def messages(self, kind: str | None = None) -> list[str]:
        return [e.message for e in self.events if kind is None or e.kind == kind]


#: the events at which a cancelled pull may stop: a later one may come after its image is
#: stored (``StoppingSink``)
PULL_STOPS_AT = frozenset({"progress"})


class StoppingSink:
    """``sink``, but once ``stop`` is set the next event of one of ``kinds`` (None: any)
    raises ``Cancelled(message)``: how a call is stopped from another thread. A build's
    pulls stop at any event; a pull a caller cancels stops only at ``progress`` (while its
    blobs arrive: at a later event the image may be stored, and Cancelled would be wrong)."""

    def __init__(
        self,
        sink: EventSink,
        stop: threading.Event,
        message: str,
        kinds: Collection[str] | None = None,
    ) -> None:
        self._sink, self._stop, self._message = sink, stop, message
        self._kinds = None if kinds is None else frozenset(kinds)

    def emit(self, event: Event) -> None:
        if self._stop.is_set() and (self._kinds is None or event.kind in self._kinds):
            raise Cancelled(self._message)
        self._sink.emit(event)


class CallbackSink:
    """Calls ``fn(event)`` for every event (front ends render from here)."""

    def __init__(self, fn: Callable[[Event], None]) -> None:
        self._fn = fn

    def emit(self, event: Event) -> None:
        self._fn(event)


BYTES_STEP = 1 << 20  # bytes of one blob between its progress events


class BlobBytes:
    """How far each blob has been read or sent -> ``progress`` events (id = its digest,
    ``Copying blob <12 hex>``): one every ``BYTES_STEP`` bytes and one at its size, however
    small the reads; a blob under ``BYTES_STEP`` makes none. ``desc`` is any descriptor
    (``.digest``, ``.size``)."""

    def __init__(self, emit: Emitter) -> None:
        self._ev = emit
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, desc: Any, n: int) -> None:
        size = desc.size if desc.size >= 0 else None
        self.report(str(desc.digest), n, size, f"Copying blob {desc.digest.hex[:12]}")

    def report(self, ident: str, n: int, total: int | None, message: str) -> None:
        """``n`` bytes of ``ident`` (of ``total``, None: unknown) so far: an event if due."""
        with self._lock:
            last = self._last.get(ident, 0)
            if n < last:  # read again from the start (a retry)
                last = self._last[ident] = 0
            ended = total is not None and n >= total and last > 0
            if n - last < BYTES_STEP and not (ended and n != last):
                return
            self._last[ident] = n
        self._ev.progress(ident, n, total, message)


class Emitter:
    """Small helpers so use cases read as ``ev.step("...")`` rather than building events."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def emit(self, kind: str, message: str = "", **data: Any) -> None:
        self.sink.emit(Event(kind, message, data))

    def step(self, message: str, **data: Any) -> None:
        self.emit(STEP, message, **data)

    def progress(self, id: str, current: int, total: int | None = None, message: str = "") -> None:
        self.emit(PROGRESS, message, id=id, current=current, total=total)

    def output(self, text: str, **data: Any) -> None:
        self.emit(OUTPUT, text, **data)

    def warning(self, message: str, **data: Any) -> None:
        self.emit(WARNING, message, **data)

    def result(self, message: str, **data: Any) -> None:
        self.emit(RESULT, message, **data)


__all__ = [
    "BYTES_STEP",
    "KINDS",
    "OUTPUT",
    "PROGRESS",
    "RESULT",
    "STEP",
    "WARNING",
    "BlobBytes",
    "CallbackSink",
    "Emitter",
    "Event",
    "EventSink",
    "ListSink",
    "NullSink",
]
