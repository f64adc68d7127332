"""What a script passes that the CLI and the API never do: a string where a list of strings
goes (``remove_images(ctx, "app")`` removed the images ``a`` and ``p``;
``run_in_container(ctx, box, "ls")`` ran ``l``), and a ``pathlib.Path`` for a file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TypeVar

from kiln.errors import InvalidArgument

T = TypeVar("T")


def string_list(value: Iterable[str], what: str) -> list[str]:
    """``value`` as a list, refusing a string, anything but strings in it, or no list at
    all (InvalidArgument naming ``what``, e.g. ``remove_images: names``, and the type:
    never the value, which may be a secret such as an ``env`` entry)."""
    try:
        items = None if isinstance(value, str | bytes) else list(value)
    except TypeError:  # not iterable
        items = None
    if items is None:
        raise InvalidArgument(f"{what} is a list of strings, not {_a(value)}")
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgument(f"{what} is a list of strings, not a list holding {_a(item)}")
    return items


def check_string_map(value: object, what: str) -> None:
    """Refuse anything but a mapping of strings to strings (InvalidArgument naming ``what``
    and the key; the value's type only: a build argument may be a secret)."""
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} maps strings to strings, not {_a(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"{what} maps strings to strings, not {_a(key)} to {_a(item)}")
        if not isinstance(item, str):
            raise InvalidArgument(f"{what} maps strings to strings, not {key!r} to {_a(item)}")


def _a(value: object) -> str:
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def as_path(value: str | os.PathLike[str] | T) -> str | T:
    """A ``pathlib.Path`` (any ``os.PathLike``) as its string; anything else (a path, a
    stream) as it is: the calls that take a file take what ``open()`` takes."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value
