"""podman 4.3's image-list filters that kiln's use case does not take, read for the libpod
route: ``after`` (``since``'s other name), ``containers=true|false`` (used by a working
container or not) and ``readonly=true|false`` (kiln's images are never read-only: kiln
has no read-only additional stores). The Docker route and the command line are left as
they were."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kiln.errors import InvalidArgument

_TRUTH = {"true": True, "1": True, "false": False, "0": False}


def split_filters(filters: Iterable[str]) -> tuple[list[str], list[Callable[[Any], bool]]]:
    """``k=v`` filters -> (the ones for ``ops.images.list_images``, tests of a summary for
    the rest)."""
    passed: list[str] = []
    checks: list[Callable[[Any], bool]] = []
    for item in filters:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "after":
            passed.append(f"since={value}")
        elif key in ("containers", "readonly"):
            want = _TRUTH.get(value.strip().lower())
            if want is None:
                raise InvalidArgument(f'invalid filter "{item}": the value must be true or false')
            checks.append(_used(want) if key == "containers" else _read_only(want))
        else:
            passed.append(item)
    return passed, checks


def _used(want: bool) -> Callable[[Any], bool]:
    return lambda s: (s.containers > 0) == want


def _read_only(want: bool) -> Callable[[Any], bool]:
    return lambda s: not want


__all__ = ["split_filters"]
