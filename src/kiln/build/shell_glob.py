"""Shell patterns of ``${V#p} ${V%p} ${V/p/r}`` matched in linear time.

A pattern is fixed-length pieces (``?``, ``[...]``, literal or escaped
characters) between ``*``s. Compiled to one backtracking regex (``.*a.*a.*b``)
and tried at every prefix, a hostile Dockerfile's ``${a#*a*a*a*b}`` on a few
hundred characters took seconds and on a few thousand hours, holding the GIL
(BuildKit's Go regexp is linear). Here a ``*`` is never backtracked into: each
segment between stars is placed at its earliest occurrence, which leaves the
most room for the rest, so a match costs one scan per segment.

The results are those of the regex the pattern stands for (``*`` as greedy
``.*``, Python's ``re`` leftmost-first), so expansions stay what they were.
Pure: standard library and ``kiln.errors`` only.
"""

from __future__ import annotations

import re

from kiln.errors import InvalidArgument

__all__ = ["ShellGlob", "replace", "trim_prefix", "trim_suffix"]


class ShellGlob:
    """A compiled shell pattern; ``escape`` is the Dockerfile's escape character."""

    def __init__(self, pattern: str, escape: str) -> None:
        self._pattern = pattern
        self._segments = _segments(pattern, escape)
        self._compiled = _compile(self._segments, pattern)
        self._lengths = [len(s) for s in self._segments]

    def reversed(self) -> ShellGlob:
        """The pattern that matches the reversed strings (for suffixes)."""
        glob = object.__new__(ShellGlob)
        glob._pattern = self._pattern
        glob._segments = [list(reversed(s)) for s in reversed(self._segments)]
        glob._compiled = _compile(glob._segments, self._pattern)
        glob._lengths = [len(s) for s in glob._segments]
        return glob

    def matches_empty(self) -> bool:
        return not any(self._lengths)

    def rest_start(self, text: str, start: int) -> int | None:
        """Where the last segment may begin at the earliest, when a match starts at
        ``start``: the first segment placed at ``start``, the middle ones at their
        earliest; None if they do not fit."""
        first = self._compiled[0]
        if not first.match(text, start):
            return None
        pos = start + self._lengths[0]
        for segment in self._compiled[1:-1]:
            found = segment.search(text, pos)
            if found is None:
                return None
            pos = found.end()
        return pos

    def ends(self, text: str, start: int, longest: bool) -> int | None:
        """The shortest or longest end of a match starting at ``start``, or None."""
        if len(self._segments) == 1:
            return start + self._lengths[0] if self._compiled[0].match(text, start) else None
        pos = self.rest_start(text, start)
        if pos is None:
            return None
        last, size = self._compiled[-1], self._lengths[-1]
        if not longest:
            found = last.search(text, pos)
            return None if found is None else found.end()
        for begin in range(len(text) - size, pos - 1, -1):
            if last.match(text, begin):
                return begin + size
        return None

    def first_match(self, text: str, pos: int) -> tuple[int, int] | None:
        """The leftmost match at or after ``pos`` as ``re.search`` finds it (stars greedy)."""
        first = self._compiled[0]
        if self._lengths[0] == 0:
            start = pos  # a leading star: a match anywhere is one from here
        else:
            found = first.search(text, pos)
            if found is None:
                return None
            start = found.start()
        # a later start only places every segment later: the first start that fits is it
        end = self.ends(text, start, longest=True)
        return None if end is None else (start, end)


def trim_prefix(value: str, glob: ShellGlob, greedy: bool) -> str:
    """``${V#p}`` (``${V##p}`` when greedy)."""
    end = glob.ends(value, 0, longest=greedy)
    return value if end is None else value[end:]


def trim_suffix(value: str, glob: ShellGlob, greedy: bool) -> str:
    """``${V%p}`` (``${V%%p}`` when greedy): a prefix match of the reversed strings."""
    end = glob.reversed().ends(value[::-1], 0, longest=greedy)
    return value if end is None else value[: len(value) - end]


def replace(value: str, glob: ShellGlob, replacement: str, every: bool, cap: int) -> str:
    """``${V/p/r}`` (``${V//p/r}`` when ``every``); the result may hold ``cap`` characters."""
    if glob.matches_empty():  # '' or '*': re.sub of '.*' is linear; keep its empty-match rules
        pattern = "".join("".join(s) for s in glob._segments) + (".*" if glob._segments[1:] else "")
        result = re.sub(
            pattern, lambda _m: replacement, value, count=0 if every else 1, flags=re.DOTALL
        )
        _check_size(len(result), cap)
        return result
    out: list[str] = []
    size = 0
    pos = 0
    while True:
        found = glob.first_match(value, pos)
        if found is None:
            break
        start, end = found
        out.append(value[pos:start])
        out.append(replacement)
        size += start - pos + len(replacement)
        _check_size(size, cap)
        pos = end
        if not every:
            break
    out.append(value[pos:])
    _check_size(size + len(value) - pos, cap)
    return "".join(out)


def _one_class(pattern: str, piece: str) -> str:
    """``piece``, a character class that matches one character by itself (``[!]`` would
    run on into the next piece as a regex: its ``]`` is a member)."""
    try:
        re.compile(piece)
    except re.error:
        raise InvalidArgument(
            f"invalid pattern {pattern!r} in substitution: bad character class {piece!r}"
        ) from None
    return piece


def _compile(segments: list[list[str]], pattern: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile("".join(s), re.DOTALL) for s in segments]
    except re.error as exc:
        raise InvalidArgument(f"invalid pattern {pattern!r} in substitution: {exc}") from None


def _check_size(size: int, cap: int) -> None:
    if size > cap:
        raise InvalidArgument(f"variable expansion longer than {cap} characters: refused")


def _segments(pattern: str, escape: str) -> list[list[str]]:
    """The regex pieces of each fixed-length segment between the pattern's stars."""
    segments: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == escape and i < len(pattern):
            segments[-1].append(re.escape(pattern[i]))
            i += 1
        elif ch == "*":
            if segments[-1] or len(segments) == 1:
                segments.append([])
        elif ch == "?":
            segments[-1].append(".")
        elif ch == "[":
            end = pattern.find("]", i + 1 if pattern[i : i + 1] in ("!", "^", "]") else i)
            if end < 0:
                segments[-1].append(re.escape(ch))
                continue
            body = pattern[i:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            segments[-1].append(_one_class(pattern, "[" + body.replace("\\", "\\\\") + "]"))
            i = end + 1
        else:
            segments[-1].append(re.escape(ch))
    return segments
