"""Turn directory trees into sorted ``TarEntry`` streams for ``write_layer``.

``scan_tree`` walks a whole tree, ``scan_overlay_upper`` an overlayfs upper
dir (char 0/0 devices are whiteouts, ``trusted.overlay.opaque=y`` marks opaque
dirs; kiln mounts overlay with ``redirect_dir`` and ``metacopy`` off, so those
xattrs never appear), ``scan_changes`` the exact difference of two full trees.
Entries carry lstat metadata and the ``user.*`` and ``security.capability``
xattrs; regular files sharing an inode become one file plus hard links.
Sockets are skipped. The trees are trusted host paths (kiln's own snapshots).

The canonical order is bytewise by member name, which is not a depth-first walk
(``a``, ``a.txt``, ``a/b``). ``scan_tree`` and ``scan_overlay_upper`` still stream it
without holding the whole tree: in each directory, a child directory's own entry sorts
by its name and its subtree by its name plus ``/`` (every path below it shares that
prefix), so sorting one directory's keys and descending lazily yields the global order,
holding only one directory per level (memory flat in the number of files).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import TypedDict

from kiln.archive.changes import is_opaque, is_whiteout, read_xattrs, walk_tree_changes
from kiln.archive.entry import TarEntry, sort_key

Include = Callable[[str], bool]


class _StatFields(TypedDict):
    """The ``TarEntry`` fields every kind of entry takes from lstat."""

    path: str
    mode: int
    uid: int
    gid: int
    mtime: int


def entry_from_stat(
    path: str, rel: str, st: os.stat_result, *, overlay: bool = False
) -> TarEntry | None:
    """The entry for host ``path`` stored as ``rel`` (None for sockets)."""
    mode = st.st_mode
    common: _StatFields = {
        "path": rel,
        "mode": stat.S_IMODE(mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": st.st_mtime_ns,
    }
    if stat.S_ISREG(mode):
        xattrs = read_xattrs(path, overlay=overlay)
        return TarEntry(type="file", source=path, size=st.st_size, xattrs=xattrs, **common)
    if stat.S_ISDIR(mode):
        return TarEntry(type="dir", xattrs=read_xattrs(path, overlay=overlay), **common)
    if stat.S_ISLNK(mode):
        return TarEntry(type="symlink", linkname=os.readlink(path), **common)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "char" if stat.S_ISCHR(mode) else "block"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return TarEntry(type=kind, devmajor=major, devminor=minor, **common)
    if stat.S_ISFIFO(mode):
        return TarEntry(type="fifo", **common)
    return None


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


# one child of a directory in _sorted_walk: (sort key within the directory, what, host path,
# relative path, lstat); what: "entry" (yield it), "opaque" (the directory's opaque marker)
# or "subtree" (descend into it)
_Item = tuple[bytes, str, str, str, "os.stat_result | None"]


def _key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _sorted_walk(
    root: str, rel_dir: str, include: Include | None, overlay: bool
) -> Iterator[tuple[str, str, str, os.stat_result | None]]:
    """(what, host path, relative path, lstat) below ``rel_dir`` in canonical order (see the
    module docstring); what is "entry", "whiteout" or "opaque"."""
    dir_path = os.path.join(root, rel_dir) if rel_dir else root
    items: list[_Item] = []
    for name in os.listdir(dir_path):
        rel = f"{rel_dir}/{name}" if rel_dir else name
        if include is not None and not include(rel):
            continue
        path = os.path.join(dir_path, name)
        st = os.lstat(path)
        if overlay and is_whiteout(st):
            items.append((_key(".wh." + name), "whiteout", path, rel, st))
            continue
        items.append((_key(name), "entry", path, rel, st))
        if stat.S_ISDIR(st.st_mode):
            items.append((_key(name) + b"/", "subtree", path, rel, st))
    if overlay and rel_dir and is_opaque(dir_path):
        items.append((b".wh..wh..opq", "opaque", dir_path, rel_dir, None))
    items.sort(key=lambda item: item[0])
    for _, what, path, rel, item_st in items:
        if what == "subtree":
            yield from _sorted_walk(root, rel, include, overlay)
        else:
            yield what, path, rel, item_st


def _links(items: Iterator[tuple[TarEntry, os.stat_result | None]]) -> Iterator[TarEntry]:
    """Entries already in canonical order, repeated (dev, inode) regular files as hard links."""
    first: dict[tuple[int, int], str] = {}
    for entry, st in items:
        if entry.type == "file" and st is not None and st.st_nlink > 1:
            target = first.setdefault((st.st_dev, st.st_ino), entry.path)
            if target != entry.path:
                yield TarEntry(path=entry.path, type="hardlink", linkname=target, mode=entry.mode,
                               uid=entry.uid, gid=entry.gid, mtime=entry.mtime)  # fmt: skip
                continue
        yield entry


def _finish(items: list[tuple[TarEntry, os.stat_result | None]]) -> Iterator[TarEntry]:
    """Sort canonically and turn repeated (dev, inode) regular files into hard links."""
    items.sort(key=lambda item: sort_key(item[0]))
    first: dict[tuple[int, int], str] = {}
    for entry, st in items:
        if entry.type == "file" and st is not None and st.st_nlink > 1:
            target = first.setdefault((st.st_dev, st.st_ino), entry.path)
            if target != entry.path:
                yield TarEntry(
                    path=entry.path,
                    type="hardlink",
                    linkname=target,
                    mode=entry.mode,
                    uid=entry.uid,
                    gid=entry.gid,
                    mtime=entry.mtime,
                )
                continue
        yield entry


def scan_tree(root: str, *, prefix: str = "", include: Include | None = None) -> Iterator[TarEntry]:
    """Every entry below ``root`` (not ``root`` itself), paths under ``prefix``, sorted.

    ``include(rel_path)`` false skips an entry; a skipped directory is not descended.
    """

    def entries() -> Iterator[tuple[TarEntry, os.stat_result | None]]:
        for _, path, rel, st in _sorted_walk(root, "", include, overlay=False):
            assert st is not None
            entry = entry_from_stat(path, _join(prefix, rel), st)
            if entry is not None:
                yield entry, st

    return _links(entries())


def scan_overlay_upper(upper: str) -> Iterator[TarEntry]:
    """A container's changes from its overlayfs upper dir, as layer entries."""

    def entries() -> Iterator[tuple[TarEntry, os.stat_result | None]]:
        for what, path, rel, st in _sorted_walk(upper, "", None, overlay=True):
            if what == "opaque":
                mtime = os.lstat(path).st_mtime_ns
                yield TarEntry(path=rel, type="opaque", mtime=mtime), None
            elif what == "whiteout":
                assert st is not None
                yield TarEntry(path=rel, type="whiteout", mtime=st.st_mtime_ns), None
            else:
                assert st is not None
                entry = entry_from_stat(path, rel, st, overlay=True)
                if entry is not None:
                    yield entry, st

    return _links(entries())


def scan_changes(lower_view: str, upper_tree: str) -> Iterator[TarEntry]:
    """The layer turning full tree ``lower_view`` into full tree ``upper_tree``.

    Added and changed entries (and the parents of changes) come from
    ``upper_tree``; deletions become whiteouts.
    """
    items: list[tuple[TarEntry, os.stat_result | None]] = []
    for kind, rel in walk_tree_changes(lower_view, upper_tree):
        if kind == "D":
            items.append((TarEntry(path=rel, type="whiteout"), None))
            continue
        path = os.path.join(upper_tree, rel)
        st = os.lstat(path)
        entry = entry_from_stat(path, rel, st)
        if entry is not None:
            items.append((entry, st))
    return _finish(items)


__all__ = ["entry_from_stat", "scan_changes", "scan_overlay_upper", "scan_tree"]
