"""The RUN stub layer's tree: which entries a stub holds, making them, and telling a whole
stub from a damaged one.

A stub (``Snapshotter.stub_layer``) is a read-only directory of empty directories and
empty files put under a RUN's overlay, so that the mountpoints an image lacks need no
placeholder in the upper directory. Whatever it holds shows in the RUN wherever no layer
of the image has that path, so before it is used it must hold exactly its entries: a stub
damaged by hand (an entry removed, one of the wrong kind, a file with content, an entry
it should not have), or torn by a power loss (renamed into place before its entries were
on disk: it is never fsynced), is made again instead of shown to a RUN or blamed on the
image ("the image's /proc is not a directory").

A stub is used for as long as a RUN's overlay is mounted on it, and held meanwhile: a
shared ``flock`` on its directory (``hold``), taken by each use. The snapshotter's sweep
removes a stub nobody holds (``take_unheld``): one of an older kiln's set of names, or
one no build has used since a prune; the next RUN makes it again in a few system calls.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable, Sequence

__all__ = ["hold", "is_whole", "make_tree", "stub_tree", "take_unheld"]

#: {relative path: True for a directory, False for an empty file}, parents first
Tree = dict[str, bool]


def stub_tree(dirs: Sequence[str], files: Sequence[str]) -> Tree:
    """The entries of the stub for ``dirs`` and ``files`` (absolute in-container paths),
    with their parent directories; a name both a directory and a parent of a file stays a
    directory, a name given as both stays the first kind it was met as."""
    tree: Tree = {}
    for name in [*dirs, *files]:
        parts = [p for p in name.split("/") if p not in ("", ".", "..")]
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel not in tree:
                tree[rel] = i < len(parts) or name in dirs
    return tree


def make_tree(top: str, tree: Tree) -> None:
    """Make ``tree`` below the empty directory ``top``: directories 0755, files 0644."""
    for rel, is_dir in tree.items():
        path = os.path.join(top, rel)
        if is_dir:
            os.mkdir(path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.chmod(path, 0o755 if is_dir else 0o644)
    os.chmod(top, 0o755)


def is_whole(top: str, tree: Tree) -> bool:
    """Whether ``top`` is a directory holding exactly ``tree``: each entry of its kind (a
    file empty and regular, nothing a symlink) and no other entry. A listing per directory
    of the tree, a few system calls."""
    children: dict[str, set[str]] = {"": set()}
    for rel, is_dir in tree.items():
        parent, _, name = rel.rpartition("/")
        children.setdefault(parent, set()).add(name)
        if is_dir:
            children.setdefault(rel, set())
    try:
        for rel, names in children.items():
            with os.scandir(os.path.join(top, rel) if rel else top) as it:
                seen = 0
                for entry in it:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.name not in names or not _same_kind(entry, tree[child]):
                        return False
                    seen += 1
            if seen != len(names):
                return False
    except OSError:  # missing, not a directory, or unreadable
        return False
    return True


def _same_kind(entry: os.DirEntry[str], is_dir: bool) -> bool:
    if is_dir:
        return entry.is_dir(follow_symlinks=False)
    if not entry.is_file(follow_symlinks=False):
        return False
    st = entry.stat(follow_symlinks=False)
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def hold(path: str) -> int | None:
    """A descriptor holding the stub ``path`` (shared, until it is closed), or None when
    ``path`` no longer names the directory it opened: a sweep set that one aside between
    the open and the lock (``take_unheld`` renames it while holding it exclusively)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a sweep holds it exclusively for a rename only
        now, held = os.lstat(path), os.fstat(fd)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def take_unheld(top: str, made_before: float, set_aside: Callable[[str], str | None]) -> list[str]:
    """Set aside (``set_aside``: rename out of ``top``, returning where to) every stub in
    ``top`` made before ``made_before`` that nobody holds, each renamed while held
    exclusively, so no use can take it meanwhile; returns where they went."""
    try:
        names = sorted(os.listdir(top))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = os.path.join(top, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_mtime >= made_before:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a RUN's overlay rests on it
            aside = set_aside(path)
            if aside is not None:
                out.append(aside)
        finally:
            os.close(fd)
    return out
