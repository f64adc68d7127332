"""What changed between two trees, or in an overlayfs upper dir, as A/C/D lists.

Two-tree comparison is exact: a regular file counts as unchanged only when
type, mode, owner, size, mtime and xattrs match *and* its bytes are equal
(unless both names are the same inode). Directories compare on mode, owner
and xattrs; a directory with changes below it is reported "C", as
``podman diff`` shows it. Deleted directories are reported once, at the top.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from kiln.util.lazy_dataclass import dataclass

_CHUNK = 1 << 20
WHITEOUT_DEV = 0


@dataclass(frozen=True)
class Change:
    """One path added, changed or deleted between two trees."""

    kind: str  # "A" added, "C" changed, "D" deleted
    path: str  # with a leading "/"


def read_xattrs(path: str | int, *, overlay: bool = False) -> dict[str, bytes]:
    """The xattrs a layer carries: ``user.*`` and ``security.capability`` (as buildah 1.28;
    never ``trusted.*`` or ``security.selinux``). ``path`` is not followed; an open fd is
    read as is.

    With ``overlay``, overlayfs' own ``user.overlay.*`` are left out.
    """
    follow = isinstance(path, int)  # an fd: the file itself (follow_symlinks=False refuses fds)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return {}
        raise
    result = {}
    for name in sorted(names):
        if name == "security.capability" or (
            name.startswith("user.") and not (overlay and name.startswith("user.overlay."))
        ):
            try:
                result[name] = os.getxattr(path, name, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
    return result


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == WHITEOUT_DEV


def is_opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def same_entry(old: str, new: str, ost: os.stat_result, nst: os.stat_result) -> bool:
    """Whether ``new`` is exactly ``old`` (metadata, and content for files)."""
    if stat.S_IFMT(ost.st_mode) != stat.S_IFMT(nst.st_mode):
        return False
    if (ost.st_dev, ost.st_ino) == (nst.st_dev, nst.st_ino):
        return True
    if (ost.st_mode, ost.st_uid, ost.st_gid) != (nst.st_mode, nst.st_uid, nst.st_gid):
        return False
    if read_xattrs(old) != read_xattrs(new):
        return False
    mode = nst.st_mode
    if stat.S_ISDIR(mode):
        return True
    if stat.S_ISLNK(mode):
        return os.readlink(old) == os.readlink(new) and ost.st_mtime_ns == nst.st_mtime_ns
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return ost.st_rdev == nst.st_rdev and ost.st_mtime_ns == nst.st_mtime_ns
    if (ost.st_size, ost.st_mtime_ns) != (nst.st_size, nst.st_mtime_ns):
        return False
    return not stat.S_ISREG(mode) or _same_bytes(old, new)


def walk_tree_changes(old_root: str | None, new_root: str) -> Iterator[tuple[str, str]]:
    """(kind, relative path) for every change, sorted by path; parents of changes are "C"."""
    found: dict[str, str] = {}
    stack: list[tuple[str, bool]] = [("", old_root is not None)]
    while stack:
        rel, old_is_dir = stack.pop()
        new_dir = os.path.join(new_root, rel)
        new_names = set(os.listdir(new_dir))
        old_names = (
            set(os.listdir(os.path.join(old_root, rel)))
            if old_root is not None and old_is_dir
            else set()
        )
        for name in new_names | old_names:
            child = f"{rel}/{name}" if rel else name
            npath = os.path.join(new_root, child)
            nst = os.lstat(npath) if name in new_names else None
            ost = (
                os.lstat(os.path.join(old_root, child))
                if old_root is not None and name in old_names
                else None
            )
            if nst is None:
                found[child] = "D"
                continue
            if ost is None:
                found[child] = "A"
            elif old_root is not None and not same_entry(
                os.path.join(old_root, child), npath, ost, nst
            ):
                found[child] = "C"
            if stat.S_ISDIR(nst.st_mode):
                stack.append((child, ost is not None and stat.S_ISDIR(ost.st_mode)))
    for path in list(found):
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found[parent] = "C"
            parent = parent.rpartition("/")[0]
    for path in sorted(found, key=lambda p: p.encode("utf-8", "surrogateescape")):
        yield found[path], path


def diff_trees(old_root: str | None, new_root: str) -> list[Change]:
    """Changes turning ``old_root`` (None: an empty tree) into ``new_root``."""
    return [Change(kind, "/" + path) for kind, path in walk_tree_changes(old_root, new_root)]


def _visible_lowers(lowers: list[str], rel: str) -> tuple[bool, list[str]]:
    """(whether ``rel`` exists in the merged lowers, the lower dirs to look in below it)."""
    below: list[str] = []
    present = False
    for lower in lowers:
        path = os.path.join(lower, rel)
        st = _lstat(path)
        if st is None:
            continue
        if is_whiteout(st):
            break
        present = True
        if not stat.S_ISDIR(st.st_mode):
            break
        below.append(lower)
        if is_opaque(path):
            break
    return present, below


def changes_from_overlay_upper(upper: str, lower_dirs: list[str]) -> list[Change]:
    """A/C/D for an overlayfs upper dir over ``lower_dirs`` (topmost lower first)."""
    found: dict[str, str] = {}
    stack: list[tuple[str, list[str]]] = [("", list(lower_dirs))]
    while stack:
        rel, lowers = stack.pop()
        upper_dir = os.path.join(upper, rel)
        names = os.listdir(upper_dir)
        if rel and is_opaque(upper_dir):
            for lower in lowers:
                for name in os.listdir(os.path.join(lower, rel)):
                    child = f"{rel}/{name}"
                    lst = os.lstat(os.path.join(lower, child))
                    if name not in names and not is_whiteout(lst):
                        found[child] = "D"
        for name in names:
            child = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(upper, child))
            present, below = _visible_lowers(lowers, child)
            if is_whiteout(st):
                found[child] = "D"
                continue
            found[child] = "C" if present else "A"
            if stat.S_ISDIR(st.st_mode):
                stack.append((child, below))
    ordered = sorted(found, key=lambda p: p.encode("utf-8", "surrogateescape"))
    return [Change(found[path], "/" + path) for path in ordered]


__all__ = [
    "Change",
    "changes_from_overlay_upper",
    "diff_trees",
    "is_opaque",
    "is_whiteout",
    "read_xattrs",
    "same_entry",
    "walk_tree_changes",
]
