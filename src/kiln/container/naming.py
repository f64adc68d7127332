"""Working-container names, as buildah gives them: ``busybox-working-container``, then ``-1``..."""

from __future__ import annotations

from collections.abc import Callable

from kiln.errors import InvalidArgument
from kiln.util.lazy_pattern import lazy_pattern

SUFFIX = "working-container"
_CONTROL = lazy_pattern(r"[\x00-\x1f\x7f-\x9f]")
_HEX_ID = lazy_pattern(r"(?:sha256:)?([0-9a-f]{12,64})")


def image_name_prefix(image: str) -> str:
    """The short image name a default container name starts with.

    ``docker.io/library/busybox:latest`` -> ``busybox``; ``localhost:5000/a/b@sha256:..`` -> ``b``;
    an image ID -> its first 12 hex digits.
    """
    m = _HEX_ID().fullmatch(image)
    if m:
        return m.group(1)[:12]
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def default_name(image: str | None, taken: Callable[[str], bool]) -> str:
    """``<prefix>-working-container`` (``working-container`` for scratch), suffixed ``-N`` if taken."""
    base = f"{image_name_prefix(image)}-{SUFFIX}" if image else SUFFIX
    if not taken(base):
        return base
    n = 1
    while taken(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def check_name(name: str) -> str:
    """A name buildah 1.28 takes (any text: ``bad/name``, ``a b``, ``x:y``), but not one kiln
    could not show or address: empty, ``.`` or ``..``, or holding a control character (a
    newline would forge a line of ``kiln containers`` or of what ``kiln from`` prints).
    Names are only ever looked up, shown and stored: no path is made of one (a container's
    snapshot and mount point are named by its ID)."""
    if name in ("", ".", "..") or _CONTROL().search(name):
        raise InvalidArgument(
            f"container name {name!r} is invalid: give a name that is not empty, '.' or "
            "'..', without control characters"
        )
    return name
