"""``kiln containers --filter``: buildah's container filters, parsed once, matched per row.

A filter is ``KEY=VALUE`` or several joined by commas; every filter given must match:

- ``id=PREFIX``: the container's ID starts with it;
- ``name=TEXT``: the container's name contains it;
- ``ancestor=IMAGE``: the image's ID starts with it, or its name ends with IMAGE's
  repository (``busybox``, ``library/busybox``, ``docker.io/library/busybox``) and, when
  IMAGE has a tag, has that tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from kiln.errors import InvalidArgument, KilnError
from kiln.oci.reference import Reference

KEYS = ("id", "name", "ancestor")


class Row(Protocol):
    id: str
    name: str
    image_id: str
    image_name: str


def parse_filters(filters: Sequence[str]) -> Callable[[Row], bool]:
    """A predicate matching the rows every filter in ``filters`` matches; InvalidArgument
    for an unknown key or a filter without ``=``."""
    tests: list[Callable[[Row], bool]] = []
    for text in filters:
        for item in text.split(","):
            key, sep, value = item.partition("=")
            if not sep or key not in KEYS:
                raise InvalidArgument(
                    f"invalid filter {item!r}: use id=PREFIX, name=TEXT or ancestor=IMAGE"
                )
            tests.append(_test(key, value))
    return lambda row: all(test(row) for test in tests)


def _test(key: str, value: str) -> Callable[[Row], bool]:
    if key == "id":
        prefix = value.removeprefix("sha256:")
        return lambda row: row.id.startswith(prefix)
    if key == "name":
        return lambda row: value in row.name
    return lambda row: _is_ancestor(row, value)


def _is_ancestor(row: Row, wanted: str) -> bool:
    if not wanted:
        return True
    if row.image_id.removeprefix("sha256:").startswith(wanted.removeprefix("sha256:")):
        return True
    repo, tag = _repo_and_tag(row.image_name)
    want_repo, want_tag = _split_tag(wanted)
    if want_tag and want_tag != tag:
        return False
    return repo == want_repo or repo.endswith("/" + want_repo)


def _repo_and_tag(name: str) -> tuple[str, str]:
    """The image's full repository and tag (``docker.io/library/busybox``, ``latest``); a
    name that is no reference (a transport, an ID) as written."""
    try:
        ref = Reference.parse(name)
    except KilnError:
        return _split_tag(name)
    return f"{ref.domain}/{ref.path}", ref.tag


def _split_tag(name: str) -> tuple[str, str]:
    name = name.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
