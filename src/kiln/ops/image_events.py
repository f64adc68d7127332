"""Image events (``docker events``, ``podman events``, ``kiln events``): recorded by the
use cases into the store's journal (:mod:`kiln.store.events`), so every kiln process on a
store (the CLI, ``kiln serve``, the varlink service) sees the others' operations.

Actions, as dockerd names them: ``pull`` and ``push`` (the event's image is the reference
moved, its name the local image), ``tag``, ``untag`` (the image's ID, the name it lost;
a journal written before kiln recorded the ID has the name as both), ``delete``, ``import``, ``load``,
``save``, ``build``. Recording is best effort: an operation that succeeded is never
reported as failed because its event could not be written (a read-only store).

Reading: :func:`past` gives the journal's events in a time window, :func:`follow` the
ones appended after a point, polling the journal (a listener costs one indexed query per
``poll`` seconds, whatever the store holds). :class:`EventFilter` is Docker's ``filters``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument, KilnError
from kiln.ops.timefmt import parse_timestamp
from kiln.store.events import EventRecord as ImageEvent  # what front ends render

if TYPE_CHECKING:
    from kiln.ops.context import Context

ACTIONS = ("pull", "push", "tag", "untag", "delete", "import", "load", "save", "build")
FILTER_KEYS = ("type", "event", "image", "label", "scope")
POLL = 0.25


def record(ctx: Context, action: str, image: str, name: str = "") -> None:
    """Append ``action`` on ``image`` (an ID or a reference) named ``name`` to the journal."""
    with contextlib.suppress(KilnError, sqlite3.Error, OSError):
        ctx.store.record_event(action, image, name)


def record_removal(
    ctx: Context,
    untagged: Iterable[str],
    deleted: Iterable[str],
    untagged_from: Mapping[str, str] | None = None,
) -> None:
    """The ``untag`` and ``delete`` events of an rmi or a prune; an untag is the image's
    (``untagged_from``: each name's image ID), named by the name it lost, as podman's."""
    ids = untagged_from or {}
    for name in untagged:
        record(ctx, "untag", ids.get(name, name), name)
    for image_id in deleted:
        record(ctx, "delete", image_id)


def parse_time(value: str | float | None, what: str) -> float | None:
    """``since``/``until``: Unix seconds (fractions allowed), RFC 3339, a date, or a
    duration ago (``10m``), as the docker and podman CLIs accept them."""

    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    with contextlib.suppress(ValueError):
        return float(value)
    ts = parse_timestamp(value)
    if ts is None:
        raise InvalidArgument(
            f'invalid value for "{what}": "{value}": give Unix seconds, RFC 3339 '
            "(2024-01-02T03:04:05Z), a date or a duration ago (10m)"
        )
    return ts


class EventFilter:
    """Docker's event filters for image events: ``type``, ``event``, ``image``, ``label``
    (image events carry no labels: nothing matches), ``scope`` (``local``)."""

    def __init__(self, filters: Iterable[str] = ()):
        self.wanted: dict[str, set[str]] = {}
        for item in filters:
            key, _, value = item.partition("=")
            if key not in FILTER_KEYS:
                raise InvalidArgument(
                    f'invalid filter "{key}": kiln reports image events only; use one of '
                    + ", ".join(FILTER_KEYS)
                )
            if key == "event":  # podman's names for dockerd's actions
                value = {v: k for k, v in LIBPOD_ACTIONS.items()}.get(value, value)
            self.wanted.setdefault(key, set()).add(value)

    def __call__(self, ev: ImageEvent) -> bool:
        w = self.wanted
        if "type" in w and "image" not in w["type"]:
            return False
        if "scope" in w and "local" not in w["scope"]:
            return False
        if "event" in w and ev.action not in w["event"]:
            return False
        if "image" in w:
            names = {ev.image, ev.image.removeprefix("sha256:"), ev.name}
            if ev.name.startswith("localhost/"):
                names.add(ev.name.removeprefix("localhost/"))
            if not names & w["image"]:
                return False
        return "label" not in w


def past(
    ctx: Context, since: float | None, until: float | None, match: Callable = EventFilter()
) -> tuple[list[ImageEvent], int]:
    """Journal events from ``since`` to ``until`` (Unix seconds; None: open) that ``match``;
    and the journal's last ID when read (follow from there)."""
    out: list[ImageEvent] = []
    last = ctx.store.last_event_id()
    if since is None:
        return out, last
    after, since_ns = 0, int(since * 1e9)
    while True:
        batch = ctx.store.events_after(after, since_ns)
        for ev in batch:
            if ev.id > last:
                return out, last
            if until is not None and ev.time_ns > until * 1e9:
                continue
            if match(ev):
                out.append(ev)
        if not batch:
            return out, last
        after = batch[-1].id


def docker_json(ev: ImageEvent) -> dict:
    """An event in dockerd's ``events.Message`` shape (podman's API answers the same)."""
    attrs = {"name": ev.name, **ev.attributes} if ev.name else dict(ev.attributes)
    return {
        "status": ev.action,
        "id": ev.image,
        "Type": "image",
        "Action": ev.action,
        "Actor": {"ID": ev.image, "Attributes": attrs},
        "scope": "local",
        "time": ev.time_ns // 1_000_000_000,
        "timeNano": ev.time_ns,
    }


#: podman's names for the actions dockerd calls delete and load
LIBPOD_ACTIONS = {"delete": "remove", "load": "loadfromarchive"}


def libpod_json(ev: ImageEvent) -> dict:
    """An event as podman's ``/libpod/events`` sends it: Docker's shape with podman's
    action names and ``containerExitCode`` (podman's client drops an event without it)."""
    out = docker_json(ev)
    action = LIBPOD_ACTIONS.get(ev.action, ev.action)
    out["status"] = out["Action"] = action
    out["Actor"]["Attributes"] = {**out["Actor"]["Attributes"], "containerExitCode": "0"}
    return out


def new_events(ctx: Context, after: int, match: Callable = EventFilter()) -> tuple[list, int]:
    """Events appended after ID ``after`` that ``match``; and the last ID seen."""
    out = []
    batch = ctx.store.events_after(after)
    for ev in batch:
        after = ev.id
        if match(ev):
            out.append(ev)
    return out, after


def follow(
    ctx: Context,
    after: int,
    until: float | None = None,
    match: Callable = EventFilter(),
    stop: Callable[[], bool] = lambda: False,
    poll: float = POLL,
) -> Iterator[ImageEvent]:
    """Events appended after ID ``after``, as they come, until ``until`` (Unix seconds) or
    until ``stop()`` says so (checked every ``poll`` seconds)."""
    while not stop():
        found, after = new_events(ctx, after, match)
        for ev in found:
            if until is not None and ev.time_ns > until * 1e9:
                return
            yield ev
        if until is not None and time.time() >= until:
            return
        time.sleep(poll if until is None else max(0.0, min(poll, until - time.time())))


__all__ = [
    "ACTIONS",
    "EventFilter",
    "ImageEvent",
    "docker_json",
    "libpod_json",
    "follow",
    "new_events",
    "parse_time",
    "past",
    "record",
    "record_removal",
]
