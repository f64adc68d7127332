"""``.dockerignore`` / ``.containerignore`` patterns, with Docker's matching rules.

Lines starting with ``#`` are comments; blank lines are skipped; patterns are
trimmed and cleaned (``filepath.Clean``), a leading ``/`` or ``./`` is dropped.
Syntax is Go's ``path.Match`` (``*``, ``?``, ``[...]``, ``\\`` escapes) plus
``**`` for any number of directories.  ``!`` makes an exception; the last
matching pattern wins; a pattern that matches a directory matches everything
below it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
from typing import BinaryIO

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["IgnoreMatcher", "find_ignore_file", "load_ignore_file", "read_ignore_patterns"]


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def read_ignore_patterns(text: str) -> list[str]:
    """The patterns of an ignore file, normalised as Docker reads them."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
        patterns.append("!" + pattern if invert else pattern)
    return patterns


# Regex pieces of a translated pattern: a star within a component, ``**`` (any
# directories), a trailing ``**`` (anything), one character, a literal ``/``.
_STAR, _DIRS, _ANY, _ONE, _SLASH = "[^/]*", "(.*/)?", ".*", "one", "/"


def _tokens(pattern: str) -> list[tuple[str, str, bool]]:
    """The pattern as (kind, regex, never matches '/') pieces."""
    out: list[tuple[str, str, bool]] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                kind = _ANY if i >= n else _DIRS
                out.append((kind, kind, False))
            else:
                out.append((_STAR, _STAR, False))
        elif ch == "?":
            out.append((_ONE, "[^/]", True))
        elif ch == "\\":
            literal = pattern[i] if i < n else "\\"
            i += 1 if i < n else 0
            out.append((_SLASH, "/", False) if literal == "/" else (_ONE, re.escape(literal), True))
        elif ch == "[":
            end = pattern.find("]", i + 1 if pattern[i : i + 1] in ("!", "^") else i)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}: unterminated [")
            body = pattern[i:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append((_ONE, "[" + body + "]", False))  # a class may match '/'
            i = end + 1
        elif ch == "/":
            out.append((_SLASH, "/", False))
        else:
            out.append((_ONE, re.escape(ch), True))
    return out


def _translate(pattern: str) -> str:
    """A pattern (components joined by ``/``) to a regex that must match a whole path.

    Stars around fixed pieces backtracked into one another: ``*a*a*a*a*b`` against a
    60-character name, or ``**/**/**/**/b`` and ``**/a/**/a/**/b`` against a deep path,
    took hours holding the GIL (Docker's Go regexp is linear). The regex keeps the
    language and loses the backtracking: ``**/**/`` is ``**/``, and where a run of
    pieces sits between two stars and the second can take whatever a later placement
    of the run would leave, the run's earliest placement is as good as any, so it is
    matched lazily in an atomic group: ``[^/]*R`` before ``*`` (R within one
    component) and ``(.*/)?R/`` before ``**`` (R whole components).
    """
    tokens = _tokens(pattern)
    tokens = [t for i, t in enumerate(tokens) if t[0] != _DIRS or tokens[i - 1 : i] != [t]]
    # one ``**`` tries each directory once: only two or more multiply
    dirs_atomic = sum(t[0] == _DIRS for t in tokens) >= 2
    return "^" + _emit(tokens, dirs_atomic) + "$"


def _emit(tokens: list[tuple[str, str, bool]], dirs_atomic: bool) -> str:
    out = []
    i = 0
    while i < len(tokens):
        atomic = _atomic_run(tokens, i, dirs_atomic)
        if atomic is not None:
            out.append(atomic[0])
            i = atomic[1]
            continue
        out.append(tokens[i][1])
        i += 1
    return "".join(out)


def _atomic_run(
    tokens: list[tuple[str, str, bool]], i: int, dirs_atomic: bool
) -> tuple[str, int] | None:
    """The star at ``i`` and the run after it as one atomic group, with the index
    after the run; None where the earliest placement of the run might not do."""
    kind = tokens[i][0]
    if kind not in (_STAR, _DIRS) or (kind == _DIRS and not dirs_atomic):
        return None
    inside = (_ONE,) if kind == _STAR else (_ONE, _SLASH, _STAR)
    end = i + 1
    while end < len(tokens) and tokens[end][0] in inside:
        end += 1
    run = tokens[i + 1 : end]
    follower = tokens[end][0] if end < len(tokens) else None
    if not run or any(t[0] == _ONE and not t[2] for t in run):
        return None  # a class may match '/': the run could span components
    if kind == _STAR and follower in (_STAR, _ANY):
        return "(?>[^/]*?" + "".join(t[1] for t in run) + ")", end
    if kind == _DIRS and follower in (_DIRS, _ANY) and run[-1][0] == _SLASH:
        return "(?>(?:[^/]*/)*?" + _emit(run, dirs_atomic) + ")", end
    return None


@dataclass(frozen=True)
class _Pattern:
    """One compiled .dockerignore line."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]
    parts: tuple[str, ...]


class IgnoreMatcher:
    """Decides which context paths (relative, ``/``-separated) are excluded."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            if exclusion:
                text = text[1:].strip()
                if not text:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
            text = _clean(text)
            try:
                regex = re.compile(_translate(text), re.DOTALL)
            except re.error as exc:
                raise InvalidArgument(f"syntax error in pattern {raw!r}: {exc}") from None
            self.patterns.append(_Pattern(text, exclusion, regex, tuple(text.split("/"))))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @staticmethod
    def _norm(rel_path: str) -> str:
        path = posixpath.normpath(rel_path.replace(os.sep, "/")).lstrip("/")
        return path or "."

    def matches(self, rel_path: str) -> bool:
        """True when ``rel_path`` (or one of its parent directories) is excluded."""
        path = self._norm(rel_path)
        parents = posixpath.dirname(path).split("/") if "/" in path else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = bool(pattern.regex.match(path))
            if not hit:
                for depth in range(1, len(parents) + 1):
                    if pattern.regex.match("/".join(parents[:depth])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def excludes_dir_entirely(self, rel_dir: str) -> bool:
        """True when ``rel_dir`` is excluded and no ``!`` pattern can bring back
        anything below it, so a walk may skip it without looking inside."""
        if not self.matches(rel_dir):
            return False
        parts = self._norm(rel_dir).split("/")
        return not any(p.exclusion and _could_match_below(p.parts, parts) for p in self.patterns)


def _could_match_below(pattern: tuple[str, ...], directory: list[str]) -> bool:
    """Conservative: could this pattern match ``directory`` or something under it?"""
    for index, component in enumerate(directory):
        if index >= len(pattern):
            return True  # pattern names a parent of the directory
        if "**" in pattern[index]:
            return True
        if not re.match(_translate(pattern[index]), component, re.DOTALL):
            return False
    return True


def _candidates(context_dir: str, dockerfile_path: str | None) -> list[str]:
    candidates = []
    if dockerfile_path:
        path = dockerfile_path
        if not os.path.isabs(path):
            path = os.path.join(context_dir, path)
        candidates += [path + ".dockerignore", path + ".containerignore"]
    candidates += [
        os.path.join(context_dir, ".containerignore"),
        os.path.join(context_dir, ".dockerignore"),
    ]
    return candidates


def _in_context(context_dir: str, path: str) -> str | None:
    """``path`` relative to the context when it is spelt inside it (lexically), else None."""
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(context_dir))
    return None if rel == ".." or rel.startswith("../") else rel


def _read_candidate(context_dir: str, path: str) -> bytes | None:
    """The bytes of one candidate ignore file, None when absent. One inside the context is
    read through the in-root resolver (a symlink there never leads out to a host file); one
    beside a Dockerfile outside it (``-f`` on the command line) is the user's own file."""
    rel = _in_context(context_dir, path)
    if rel is None:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as fh:
            return _read_capped(fh, path)
    with SafeRoot.opened(context_dir) as root:
        try:
            fd = root.open_regular(rel, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ELOOP):
                return None  # a directory, FIFO or link loop is no ignore file
            raise
    with os.fdopen(fd, "rb") as fh:
        return _read_capped(fh, path)


# Real ignore files are a few kB (a generated one, some thousand lines); a hostile
# context's sparse 3 GB one was read, decoded and split whole: minutes and gigabytes.
MAX_IGNORE_BYTES = 4 * 1024 * 1024


def _read_capped(fh: BinaryIO, path: str) -> bytes:
    data = fh.read(MAX_IGNORE_BYTES + 1)
    if len(data) > MAX_IGNORE_BYTES:
        raise InvalidArgument(
            f"ignore file {path} is over the {MAX_IGNORE_BYTES // (1024 * 1024)} MiB limit"
        )
    return data


def find_ignore_file(context_dir: str, dockerfile_path: str | None = None) -> str | None:
    """The ignore file podman/buildah use: ``<Dockerfile>.dockerignore``, then
    ``<Dockerfile>.containerignore`` (next to the Dockerfile), then the context's
    ``.containerignore``, then ``.dockerignore``."""
    for candidate in _candidates(context_dir, dockerfile_path):
        if _read_candidate(context_dir, candidate) is not None:
            return candidate
    return None


def load_ignore_file(context_dir: str, dockerfile_path: str | None = None) -> list[str]:
    """Patterns from the ignore file that applies (empty when there is none)."""
    for path in _candidates(context_dir, dockerfile_path):
        try:
            data = _read_candidate(context_dir, path)
            if data is None:
                continue
            return read_ignore_patterns(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read ignore file {path}: {exc}") from exc
    return []
