"""dockerd's ``reference`` filter of ``GET /images/json``.

dockerd matches each name of an image on its own, with Go's ``path.Match``, against the
familiar name with its tag or digest (``busybox:latest``) and without (``busybox``): ``*``
and ``?`` never match a ``/`` (``kiln-test*`` is not ``kiln-test/data``, ``*:1`` is not
``kiln-test/data:1``). An image is listed when one of its names matches, and shows only
the names that match. A malformed pattern (``[bad``) fails the listing with dockerd
20.10's 500 "syntax error in pattern", images or not. libpod's routes and ``kiln images``
keep podman's filter (``kiln.ops.images.reference_matches``), which lists nothing for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from kiln.errors import KilnError

from .shapes import familiar


class BadPattern(KilnError):
    """dockerd's answer to a pattern Go's ``path.Match`` refuses: a 500, whether or not
    an image has a name to match (podman lists nothing instead: libpod's filter)."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


def check_patterns(patterns: Iterable[str]) -> None:
    """``BadPattern`` for the first malformed pattern, as dockerd refuses the listing."""
    for pattern in patterns:
        _compiled(pattern)


def path_match(pattern: str, text: str) -> bool:
    """Go's ``path.Match``: ``*`` (any run of non-``/``), ``?`` (one non-``/``),
    ``[...]`` (a class, ``[^...]`` negated), ``\\`` escapes; a malformed pattern (an
    unclosed or empty class, a range missing an end, a trailing ``\\``) is ``BadPattern``."""
    return _compiled(pattern).fullmatch(text) is not None


@functools.lru_cache(maxsize=64)  # a client sends the same few patterns again and again
def _compiled(pattern: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(pattern)

    def class_char() -> str:  # Go's getEsc: one character of a class, which must go on
        nonlocal i
        if i >= n or pattern[i] in "-]":
            raise BadPattern()
        if pattern[i] == "\\":
            i += 1
            if i >= n:
                raise BadPattern()
        i += 1
        if i >= n:
            raise BadPattern()
        return pattern[i - 1]

    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise BadPattern()
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            negated = i < n and pattern[i] == "^"
            i += negated
            ranges: list[tuple[str, str]] = []
            while not (ranges and i < n and pattern[i] == "]"):
                lo = hi = class_char()
                if pattern[i] == "-":
                    i += 1
                    hi = class_char()
                ranges.append((lo, hi))
            i += 1
            # a reversed range (z-a) is valid in Go and matches nothing
            body = "".join(f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges if lo <= hi)
            out.append(f"[{'^' if negated else ''}{body}]" if body else "." if negated else "(?!)")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def name_matches(name: str, patterns: Sequence[str]) -> bool:
    """Does the stored ``name`` (``docker.io/library/busybox:latest``, or a ``repo@digest``)
    match one of ``patterns`` as dockerd matches it?"""
    full = familiar(name)
    repo = full.partition("@")[0]
    slash, colon = repo.rfind("/"), repo.rfind(":")
    bare = repo[:colon] if colon > slash else repo
    return any(path_match(p, full) or path_match(p, bare) for p in patterns)


def matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names that match one of ``patterns`` (all of them when there are none)."""
    return [n for n in names if not patterns or name_matches(n, patterns)]


__all__ = ["BadPattern", "check_patterns", "matching", "name_matches", "path_match"]
