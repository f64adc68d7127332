"""The build contexts' checksum indexes on disk, and their removal once their directory is
gone.

    <root>/context-index/<hash>         the index of one context directory (opaque here:
                                        ``kiln.build.context_index``)
    <root>/context-index/<hash>.root    the path of that directory

A build from a fresh directory (a CI job's clone, removed afterwards) leaves an index
nothing will read again, as big as a listing of the context (~270 KB for 2,000 files, tens
of MB for a big one): ``remove_orphan_indexes``, run by every GC, removes the indexes whose
directory no longer exists, and those of older kilns (no ``.root``) that no build has
rewritten for ``LEGACY_MAX_AGE``. An index that goes costs the next build of its directory
one rehash.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import NamedTuple

__all__ = [
    "CONTEXT_INDEX_DIR",
    "LEGACY_MAX_AGE",
    "IndexFile",
    "list_indexes",
    "name_directory",
    "remove_indexes",
    "remove_orphan_indexes",
]

#: the per-directory checksum indexes of build contexts, under the store's root
CONTEXT_INDEX_DIR = "context-index"
#: seconds: an index of an older kiln (no ``.root``) goes when it is this old
LEGACY_MAX_AGE = 7 * 24 * 3600.0
_ROOT = ".root"


class IndexFile(NamedTuple):
    """One context's index, as ``system df`` shows it."""

    name: str
    directory: str  # '' when not noted (an older kiln's)
    size: int  # bytes, its note included
    written: float  # when a build last rewrote it


def list_indexes(folder: str) -> list[IndexFile]:
    """The indexes in ``folder``."""
    out = []
    entries: list[os.DirEntry[str]] = []
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
        entries = [e for e in it if "." not in e.name]
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        note = 0
        with contextlib.suppress(OSError):
            note = os.lstat(entry.path + _ROOT).st_size
        directory = _directory_of(entry.path) or ""
        out.append(IndexFile(entry.name, directory, st.st_size + note, st.st_mtime))
    return out


def name_directory(index_path: str, context_root: str) -> None:
    """Record which directory the index ``index_path`` is of (once: the name of an index
    is a hash of its directory's path, so it never changes)."""
    path = index_path + _ROOT
    data = os.fsencode(context_root)
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == len(data):
            return
    # written in place: a torn one names no directory, and costs that index's rebuild
    with contextlib.suppress(OSError), open(path, "wb") as f:
        f.write(data)


def remove_indexes(folder: str, written_before: float) -> int:
    """Remove the indexes no build has rewritten since ``written_before`` (a prune of the
    build cache), each with its note; returns how many. Writers' temporary files are theirs
    (``kiln.store.cache``)."""
    removed = 0
    for name in _index_names(folder):
        index = os.path.join(folder, name)
        try:
            if os.lstat(index).st_mtime > written_before:
                continue
        except FileNotFoundError:
            continue
        _unlink(index)
        removed += 1
    return removed


def remove_orphan_indexes(folder: str, dry_run: bool = False) -> tuple[int, int]:
    """Remove the indexes in ``folder`` whose context directory is gone (and old ones of
    older kilns); returns how many and their bytes. Writers' temporary files are theirs
    (``kiln.store.cache``)."""
    removed = freed = 0
    old = time.time() - LEGACY_MAX_AGE
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        names = set(os.listdir(folder))
    for name in sorted(n for n in names if "." not in n):
        index = os.path.join(folder, name)
        root = _directory_of(index)
        try:
            st = os.lstat(index)
        except FileNotFoundError:
            continue
        if root is None and st.st_mtime >= old:
            continue  # an older kiln's, in use lately
        if root is not None and os.path.isdir(root):
            continue
        if not dry_run:
            _unlink(index)
        removed += 1
        freed += st.st_size
    for name in names:  # a ``.root`` whose index is gone (removed by hand, a crash)
        if name.endswith(_ROOT) and name.removesuffix(_ROOT) not in names and not dry_run:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
    return removed, freed


def _directory_of(index_path: str) -> str | None:
    try:
        with open(index_path + _ROOT, "rb") as f:
            return os.fsdecode(f.read(65536))
    except OSError:
        return None


def _index_names(folder: str) -> list[str]:
    """The indexes in ``folder`` (not their notes, nor writers' temporary files)."""
    try:
        return sorted(n for n in os.listdir(folder) if "." not in n)
    except FileNotFoundError:
        return []


def _unlink(index: str) -> None:
    """Remove an index, then its note (a note left alone goes with the next GC)."""
    for path in (index, index + _ROOT):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
