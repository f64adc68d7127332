"""``COPY --parents``: sources keep their parent directories under the destination, as
BuildKit's Dockerfile 1.20 (and ``cp --parents``, ``rsync --relative``) do.

A source ``a/b/./c/*.txt`` is split at its first ``/./``: the part before is the *pivot*
(the context root, or ``--from``'s root, when there is none), the part after a pattern
matched below it, whose ``**`` component matches any number of directories. Every match
lands at its path relative to the pivot under the destination (always a directory); the
directories on the way are copied with their own mode, owner (``--from``) and times, as
directories inside a copied tree are, and a matched directory brings its whole tree. A
path without wildcards must exist; a wildcard may match nothing when another source of
the instruction matches something.

Each pivot is staged into a temporary tree holding only its matches (through
``BuildContext.staged``, so ``.dockerignore`` and ``--exclude`` apply; from a stage or an
image through :class:`kiln.build.staging.Stager`, ``--exclude`` applied by the same rules),
whose contents are then copied with the usual COPY rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable, Iterator

from kiln.archive.safe_root import SafeRoot
from kiln.build.context import BuildContext
from kiln.build.dockerignore import IgnoreMatcher
from kiln.build.staging import Stager
from kiln.container.paths import clean_source, has_meta, match_recursive, match_wildcards
from kiln.errors import NotFound

__all__ = ["combined_digest", "group_by_pivot", "split_pivot", "staged_from_root"]

Lstat = Callable[[str], "os.stat_result | None"]


def split_pivot(src: str) -> tuple[str, str]:
    """(pivot, pattern), both cleaned relative paths ("" is the root)."""
    parent, sep, pattern = src.partition("/./")
    if not sep:
        parent, pattern = "", src
    return clean_source(parent), clean_source(pattern)


def group_by_pivot(
    sources: list[str], lstat: Lstat, listdir: Callable[[str], list[str]]
) -> dict[str, list[str]]:
    """pivot -> the root-relative paths its sources match (sorted, none nested in another)."""
    groups: dict[str, set[str]] = {}
    for src in sources:
        pivot, pattern = split_pivot(src)
        pivots = (
            match_wildcards(pivot, lambda p: lstat(p) is not None, listdir)
            if has_meta(pivot)
            else [pivot]
        )
        for base in pivots:
            full = posixpath.join(base, pattern) if pattern else base
            if not has_meta(full):
                if full and lstat(full) is None:
                    raise NotFound(f'"{src}": no such file or directory (COPY --parents)')
                groups.setdefault(base, set()).add(full)
                continue

            found = _matches_below(base, pattern, lstat, listdir)
            groups.setdefault(base, set()).update(found)
    if not any(groups.values()):
        raise NotFound(f"no source files were specified: {' '.join(sources)} match nothing")
    return {pivot: sorted(paths) for pivot, paths in groups.items() if paths}


def _matches_below(
    base: str, pattern: str, lstat: Lstat, listdir: Callable[[str], list[str]]
) -> list[str]:
    """Root-relative paths below ``base`` matching ``pattern`` (``**`` allowed)."""

    def below(rel: str) -> str:
        return posixpath.join(base, rel) if rel else base

    found = match_recursive(pattern, lambda p: lstat(below(p)), lambda p: listdir(below(p)))
    return [below(m) for m in found]


@contextlib.contextmanager
def staged_from_root(
    root: str,
    paths: list[str],
    tmpdir: str | None,
    excludes: IgnoreMatcher | None = None,
    pivot: str = "",
) -> Iterator[str]:
    """A temporary tree holding ``paths`` of ``root`` (an image's or a stage's rootfs) and
    the directories leading to them, owners kept (COPY --from keeps them); below each path,
    what ``excludes`` match relative to ``pivot`` is left out, as the context's walk
    leaves it out."""
    with (
        SafeRoot.opened(root) as src,
        tempfile.TemporaryDirectory(prefix="kiln-parents-", dir=tmpdir) as tmp,
        SafeRoot.opened(tmp) as dst,
        contextlib.ExitStack() as held,
    ):
        tree = held.enter_context(BuildContext(root)) if excludes is not None else None

        def lstat(rel: str) -> os.stat_result | None:
            try:
                return src.lstat(rel)
            except (FileNotFoundError, NotADirectoryError):
                return None

        with Stager(src, dst, lstat, keep_owner=True) as stager:
            for top in paths:
                walk = (_walk(src, top, lstat) if tree is None
                        else tree.walk(top, excludes, pivot, follow=True))  # fmt: skip
                for rel, st in walk:
                    stager.stage(rel, st, follow=rel == top)
        yield tmp


def _walk(src: SafeRoot, top: str, lstat: Lstat) -> Iterator[tuple[str, os.stat_result]]:
    """``top`` (followed in-root) and everything below it, parents first, nothing below
    followed."""
    try:
        st = src.stat(top or "/", follow=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f'"{top}": no such file or directory (COPY --parents --from)') from None
    stack = [(top, st)]
    while stack:
        rel, st = stack.pop()
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(src.listdir(rel or "/"), reverse=True):
                child = posixpath.join(rel, name) if rel else name
                cst = lstat(child)
                if cst is not None:
                    stack.append((child, cst))


def combined_digest(digests: list[str]) -> str:
    if len(digests) == 1:
        return digests[0]
    return "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()
