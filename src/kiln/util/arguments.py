"""What a script passes that the CLI and the API never do: a string where a list of strings
goes (``remove_images(ctx, "app")`` removed the images ``a`` and ``p``;
``run_in_container(ctx, box, "ls")`` ran ``l``), and a ``pathlib.Path`` for a file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from kiln.errors import InvalidArgument

T = TypeVar("T")


def string_list(value: Iterable[str], what: str) -> list[str]:
    """``value`` as a list, refusing a string or anything but strings in it
    (InvalidArgument naming ``what``, e.g. ``remove_images: names``)."""
    items = None if isinstance(value, str | bytes) else list(value)
    if items is None or not all(isinstance(v, str) for v in items):
        raise InvalidArgument(f"{what} is a list of strings, not {value!r}")
    return items


def as_path(value: str | os.PathLike[str] | T) -> str | T:
    """A ``pathlib.Path`` (any ``os.PathLike``) as its string; anything else (a path, a
    stream) as it is: the calls that take a file take what ``open()`` takes."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value
