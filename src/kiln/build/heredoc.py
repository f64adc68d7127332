"""Heredocs in Dockerfile instructions (``RUN <<EOF``, ``COPY <<EOF /dest``).

The ``dockerfile`` package gives each heredoc's name, file descriptor and raw
body but not how it was written.  This module reads the instruction line again
to learn, per heredoc, whether its body is expanded (an unquoted delimiter) and
whether leading tabs are stripped (``<<-``), as BuildKit's parser does.
"""

from __future__ import annotations

import re

from kiln.build.lexer import ShellLex
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["Heredoc", "HeredocMarker", "chomp", "heredoc_markers", "attach_bodies"]

_MARKER = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_QUOTES = ("'", '"')


@dataclass(frozen=True)
class Heredoc:
    """One heredoc: ``body`` already has leading tabs removed when ``chomp``."""

    name: str
    body: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0


@dataclass(frozen=True)
class HeredocMarker:
    """A ``<<NAME`` word found on an instruction line."""

    name: str
    expand: bool
    chomp: bool
    fd: int


def chomp(text: str) -> str:
    """Strip leading tab characters from every line, as ``<<-`` asks."""
    return "".join(line.lstrip("\t") for line in text.splitlines(keepends=True))


def _count_quotes(text: str) -> int:
    return sum(text.count(q) for q in _QUOTES)


def _marker(word: str) -> HeredocMarker | None:
    match = _MARKER.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    try:
        plain = ShellLex(skip_unset=True).process_words(rest, {})
        raw = ShellLex(skip_unset=True, raw_quotes=True).process_words(rest, {})
    except InvalidArgument:
        return None
    if len(plain) != 1 or len(raw) != 1:
        return None
    # A quoted delimiter (any part of it) turns expansion of the body off.
    expand = _count_quotes(plain[0]) == _count_quotes(raw[0])
    return HeredocMarker(
        name=plain[0],
        expand=expand,
        chomp=match.group(2) == "-",
        fd=int(match.group(1) or 0),
    )


def heredoc_markers(line: str, escape: str = "\\") -> list[HeredocMarker]:
    """The heredoc markers on one instruction line, in order."""
    lex = ShellLex(escape, raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lex.process_words(line, {})
    except InvalidArgument:
        words = line.split()
    markers = []
    for word in words:
        marker = _marker(word)
        if marker is not None:
            markers.append(marker)
    return markers


def attach_bodies(
    line: str, bodies: list[tuple[str, int, str]], escape: str = "\\"
) -> tuple[Heredoc, ...]:
    """Join the parser's ``(name, fd, raw body)`` triples with the markers on ``line``."""
    markers = heredoc_markers(line, escape)
    result = []
    for index, (name, fd, raw_body) in enumerate(bodies):
        marker = markers[index] if index < len(markers) else None
        if marker is None or marker.name != name:
            marker = next((m for m in markers if m.name == name), None)
        expand = marker.expand if marker else True
        strip = marker.chomp if marker else False
        body = chomp(raw_body) if strip else raw_body
        result.append(Heredoc(name=name, body=body, expand=expand, chomp=strip, fd=fd))
    return tuple(result)
