"""Docker's COPY/ADD path rules: sources in a context, wildcards, destinations.

Wildcards are Go's ``filepath.Match`` (``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\`` escapes; no
match across ``/``), applied per path component. A source may not climb out of its context
with ``..``. Destinations are relative to the working directory; a trailing ``/`` (or ``/.``)
makes a directory.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import re
import stat
from collections.abc import Callable

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument, NotFound

_META = "*?[\\"


def has_meta(path: str) -> bool:
    return any(c in path for c in _META)


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match(pattern, name)`` on Linux; a malformed pattern raises InvalidArgument."""
    return _compile(pattern).fullmatch(name) is not None


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise _bad(pattern)
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i, cls = _char_class(pattern, i + 1)
            out.append(cls)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(_atomic_runs(out), re.DOTALL)


def _atomic_runs(pieces: list[str]) -> str:
    """The regex of ``pieces``, each run between two stars matched at its earliest.

    ``*a*a*a*a*a*b`` backtracked into itself against a long name (120 characters: 7 s,
    255: hours, holding the GIL); the names matched are single components, so a star
    takes any text and the earliest place of a run between two stars is as good as any:
    ``[^/]*R`` before a star becomes the atomic ``(?>[^/]*?R)``. Same language."""
    out: list[str] = []
    i = 0
    while i < len(pieces):
        end = i + 1
        while end < len(pieces) and pieces[end] != "[^/]*":
            end += 1
        if pieces[i] == "[^/]*" and end > i + 1 and end < len(pieces):
            out.append("(?>[^/]*?" + "".join(pieces[i + 1 : end]) + ")")
            i = end
            continue
        out.append(pieces[i])
        i += 1
    return "".join(out)


def _bad(pattern: str) -> InvalidArgument:
    return InvalidArgument(f"source pattern {pattern!r} is malformed (Go filepath.Match syntax)")


def _char_class(p: str, i: int) -> tuple[int, str]:
    """Translate ``[...]`` starting after ``[``; returns (index after ``]``, regex)."""
    negated = i < len(p) and p[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    while True:
        if i >= len(p):
            raise _bad(p)
        if p[i] == "]" and ranges:
            i += 1
            break
        lo, i = _class_char(p, i)
        hi = lo
        if i < len(p) and p[i] == "-":
            hi, i = _class_char(p, i + 1)
            if hi < lo:
                raise _bad(p)
        ranges.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    body = "".join(ranges)
    return i, (f"[^/{body}]" if negated else f"(?![/])[{body}]")


def _class_char(p: str, i: int) -> tuple[str, int]:
    if i >= len(p) or p[i] in "-]":
        raise _bad(p)
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise _bad(p)
    return p[i], i + 1


def clean_source(src: str) -> str:
    """The source's path relative to its context root, cleaned as if the context were ``/``:
    ``../f`` is the context's ``f``, as buildah and BuildKit read it (``..`` never leaves)."""
    if "\x00" in src:
        raise InvalidArgument(f"source path {src!r} contains a NUL byte")
    rel = posixpath.normpath("/" + src).lstrip("/")
    return rel


def expand_source(root: SafeRoot, src: str) -> list[str]:
    """Context-relative paths ``src`` names: itself, or every match of its wildcards (sorted).

    Raises NotFound when nothing exists or nothing matches.
    """
    rel = clean_source(src)
    if not has_meta(rel):
        if rel and not _exists(root, rel):
            raise NotFound(f"copy source {src!r} not found in the context: check the path")
        matches = [rel]
    else:
        matches = match_wildcards(rel, lambda p: _exists(root, p), lambda p: root.listdir(p or "/"))
        if not matches:
            raise NotFound(f"no source files match {src!r} in the context: check the pattern")
    for match in matches:
        if match and not _leads_somewhere(root, match):
            raise NotFound(
                f"copy source {match!r} is a symbolic link that leads to nothing inside the "
                "context (links are followed as if the context were /): name its target instead"
            )
    return matches


def match_wildcards(
    rel: str, exists: Callable[[str], bool], listdir: Callable[[str], list[str]]
) -> list[str]:
    """Every path matching ``rel`` (Go filepath.Match per component), sorted, walking
    with ``exists`` and ``listdir`` (relative paths; "" is the root)."""
    matches = [""]
    for part in rel.split("/"):
        nxt: list[str] = []
        for base in matches:
            if not has_meta(part):
                cand = f"{base}/{part}" if base else part
                if exists(cand):
                    nxt.append(cand)
                continue
            try:
                names = listdir(base)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in sorted(names):
                if go_match(part, name):
                    nxt.append(f"{base}/{name}" if base else name)
        matches = nxt
    return matches


def match_recursive(
    rel: str,
    lstat: Callable[[str], os.stat_result | None],
    listdir: Callable[[str], list[str]],
) -> list[str]:
    """:func:`match_wildcards` where a ``**`` component also matches any number of
    components, none included (COPY --parents, as BuildKit's include patterns); ``**``
    descends into real directories only, never through a symlink. Paths below another
    match are left out (a matched directory brings its whole tree)."""
    parts = [p for p in rel.split("/") if p]
    found: set[str] = set()

    def join(base: str, name: str) -> str:
        return f"{base}/{name}" if base else name

    def names(base: str) -> list[str]:
        try:
            return sorted(listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(base: str, i: int) -> None:
        if i == len(parts):
            if not base or lstat(base) is not None:  # lstat may hide ignored paths
                found.add(base)
            return
        part = parts[i]
        if part == "**":
            walk(base, i + 1)
            for name in names(base):
                st = lstat(join(base, name))
                if st is not None and stat.S_ISDIR(st.st_mode):
                    walk(join(base, name), i)
        elif not has_meta(part):
            if lstat(join(base, part)) is not None:
                walk(join(base, part), i + 1)
        else:
            for name in names(base):
                if go_match(part, name):
                    walk(join(base, name), i + 1)

    walk("", 0)
    out = sorted(found)
    return [m for m in out if not any(m.startswith(o + "/") or not o for o in out if o != m)]


def escape_meta(path: str) -> str:
    """``path`` as a pattern matching exactly itself."""
    return "".join("\\" + c if c in _META else c for c in path)


def _exists(root: SafeRoot, rel: str) -> bool:
    try:
        root.lstat(rel)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _leads_somewhere(root: SafeRoot, rel: str) -> bool:
    """Whether ``rel``, followed in-root, exists (a dangling link, a link out of the root
    or a link loop does not)."""
    try:
        root.stat(rel, follow=True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return False
        raise
    return True


def resolve_dest(dest: str, workdir: str) -> tuple[str, bool]:
    """(absolute destination path, whether it names a directory by its spelling)."""
    if not dest:
        raise InvalidArgument("a destination path is required")
    is_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "..")
    full = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    norm = posixpath.normpath(full)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm, is_dir or norm == "/"


def is_dir_in(root: SafeRoot, rel: str) -> bool:
    """Whether ``rel`` is (or is a symlink resolving in-root to) a directory."""
    fds: list[int] = []  # closed even if a Ctrl-C lands as it opens
    try:
        try:
            fd = root.open_path_into(fds, rel, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        for fd in fds:
            os.close(fd)
