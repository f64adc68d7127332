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


def _translate(pattern: str) -> str:
    """A pattern (components joined by ``/``) to a regex that must match a whole path."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end = pattern.find("]", i + 1 if pattern[i : i + 1] in ("!", "^") else i)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}: unterminated [")
            body = pattern[i:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    return "".join(out)


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
            return fh.read()
    with SafeRoot(context_dir) as root:
        try:
            fd = root.open_regular(rel, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ELOOP):
                return None  # a directory, FIFO or link loop is no ignore file
            raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


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
