"""dockerd's ``reference`` filter of ``GET /images/json``.

dockerd matches each name of an image on its own, with Go's ``path.Match``, against the
familiar name with its tag or digest (``busybox:latest``) and without (``busybox``): ``*``
and ``?`` never match a ``/`` (``kiln-test*`` is not ``kiln-test/data``, ``*:1`` is not
``kiln-test/data:1``). An image is listed when one of its names matches, and shows only
the names that match. libpod's routes and ``kiln images`` keep podman's filter
(``kiln.ops.images.reference_matches``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from .shapes import familiar


def path_match(pattern: str, text: str) -> bool:
    """Go's ``path.Match``: ``*`` (any run of non-``/``), ``?`` (one non-``/``),
    ``[...]`` (a class, ``[^...]`` negated), ``\\`` escapes; a malformed pattern matches
    nothing, as dockerd skips a pattern that errs."""
    regex = _compiled(pattern)
    return regex is not None and regex.fullmatch(text) is not None


@functools.lru_cache(maxsize=64)  # a client sends the same few patterns again and again
def _compiled(pattern: str) -> re.Pattern[str] | None:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                return None
            out.append("[" + pattern[i:end].replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None


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


__all__ = ["matching", "name_matches", "path_match"]
