"""Image events as dockerd shows them on Docker's ``/events``, and its ``image`` filter.

The journal (``kiln.ops.image_events``) keeps kiln's facts: full names
(``docker.io/library/app:1``), a ``build`` action (podman's), a ``delete`` with the image
ID and no name. dockerd 20.10 says the same things its own way, and scripts read them
with ``docker events --format '{{.Actor.Attributes.name}}'`` or ``--filter image=app``:

- names are familiar (``app:1``);
- a build that tags its image is a ``tag`` event (dockerd has no ``build`` image event),
  so ``--filter event=tag`` sees it too;
- a ``delete`` and an ``untag`` are named by the image's ID, in ``id`` and in the ``name``
  attribute alike (dockerd 20.10 leaves the removed name out; podman's shows it);
- ``image=X`` matches the event's ID or name, each also without its tag (``app`` matches
  ``app:1``), as dockerd's ``matchImage``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kiln.ops import image_events

from .shapes import familiar


def docker_event(ev: image_events.ImageEvent) -> dict[str, Any]:
    """``ev`` in dockerd's ``events.Message`` shape, with dockerd's names and actions."""
    out = image_events.docker_json(ev)
    attrs = out["Actor"]["Attributes"]
    if ev.action == "delete" or (ev.action == "untag" and ev.image.startswith("sha256:")):
        attrs["name"] = ev.image  # dockerd names both by the image's ID only
    elif "name" in attrs:
        attrs["name"] = familiar(attrs["name"])
    if not out["id"].startswith("sha256:"):  # a pull's, a push's; an untag's of old journals
        out["id"] = out["Actor"]["ID"] = familiar(out["id"])
    if ev.action == "build" and ev.name:
        out["status"] = out["Action"] = "tag"
    return out


class DockerEventFilter:
    """Docker's event filters (``kiln.ops.image_events.EventFilter``) with dockerd's
    ``image`` matching and ``event=tag`` taking in builds."""

    def __init__(self, filters: Iterable[str]):
        rest, self.images = [], set()
        for item in filters:
            key, _, value = item.partition("=")
            if key == "image":
                self.images |= {value, familiar(value)}
            else:
                rest.append(item)
        # a tagged build is shown as tag (docker_event); an untagged one is not a tag
        self.tagged_builds_only = "event=tag" in rest and "event=build" not in rest
        if self.tagged_builds_only:
            rest.append("event=build")
        self.base = image_events.EventFilter(rest)

    def __call__(self, ev: image_events.ImageEvent) -> bool:
        if not self.base(ev) or (self.tagged_builds_only and ev.action == "build" and not ev.name):
            return False
        if not self.images:
            return True
        shown = docker_event(ev)
        names = {shown["id"], shown["Actor"]["Attributes"].get("name", "")}
        names |= {_without_tag(n) for n in names} | {n.removeprefix("sha256:") for n in names}
        return bool(names & self.images)


def _without_tag(name: str) -> str:
    """``app:1`` -> ``app``; a digest reference or an ID stays."""
    if "@" in name or name.startswith("sha256:"):
        return name
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


__all__ = ["DockerEventFilter", "docker_event"]
