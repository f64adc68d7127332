"""What a script may get wrong that the CLI and the API never do (their parsers make lists):
a string where a list of strings goes. ``remove_images(ctx, "app")`` removed the images
``a`` and ``p``; ``run_in_container(ctx, box, "ls")`` ran ``l``."""

from __future__ import annotations

from collections.abc import Iterable

from kiln.errors import InvalidArgument


def string_list(value: Iterable[str], what: str) -> list[str]:
    """``value`` as a list, refusing a string or anything but strings in it
    (InvalidArgument naming ``what``, e.g. ``remove_images: names``)."""
    items = None if isinstance(value, str | bytes) else list(value)
    if items is None or not all(isinstance(v, str) for v in items):
        raise InvalidArgument(f"{what} is a list of strings, not {value!r}")
    return items
