"""Merge overlay-format layer directories into one plain tree (the copy driver).

Layers are applied bottom first: a 0/0 character device deletes the path
below it, a directory marked ``trusted.overlay.opaque`` (or ``user.``) hides
what lower layers had in it. Files are copied with ``copy_file_range`` (a
reflink on filesystems that can), with owner, mode, times and xattrs kept and
hard links inside a layer preserved.

Cost: every prepare copies the whole image (time and disk proportional to its
size), where an overlay mount costs nothing.

``copy_tree`` is the same copy of one plain tree (a mounted image) into a directory the
user named (``--output type=local``).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from kiln.archive.changes import is_opaque, is_whiteout
from kiln.archive.layer_xattrs import OVERLAY_XATTR_PREFIXES, layer_may_set
from kiln.util.owned_open import open_into


def merge_layers(layers_top_first: list[str], dest: str) -> None:
    """Build the merged view of ``layers_top_first`` in ``dest`` (an existing directory)."""
    for layer in reversed(layers_top_first):
        _copy_dir(layer, dest, {})
        _copy_meta(layer, dest, os.lstat(layer))


def copy_tree(src: str, dest: str) -> None:
    """Copy the plain tree ``src`` into the existing directory ``dest`` as files of the
    caller, as BuildKit's client writes a local export: modes, times, xattrs it may set and
    hard links kept, owners not; a device node the caller may not make is left out. What
    ``dest`` has at a path is replaced, never written through: a symbolic link an earlier
    export left there is not followed. An ``OSError`` names (``filename``) the path under
    ``dest`` it failed on, when it was a write."""
    _copy_dir(src, dest, {}, plain=True)
    _copy_meta(src, dest, os.lstat(src), plain=True)  # as shutil.copytree did


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str], plain: bool = False) -> None:
    """Copy directory ``src``'s entries into ``dst``: a layer's (whiteouts and opaque
    directories applied, owners kept) or, ``plain``, a tree's (``copy_tree``)."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        s, d = entry.path, os.path.join(dst, entry.name)
        try:
            _copy_entry(s, d, entry.stat(follow_symlinks=False), links, plain)
        except OSError as exc:
            if exc.filename is None:  # a write of d's bytes (copy_file_range, write)
                exc.filename = d
            raise


def _copy_entry(
    s: str, d: str, st: os.stat_result, links: dict[tuple[int, int], str], plain: bool
) -> None:
    if not plain and is_whiteout(st):
        _remove(d)
        return
    if stat.S_ISDIR(st.st_mode):
        if os.path.isdir(d) and not os.path.islink(d):
            if not plain and is_opaque(s):
                shutil.rmtree(d)
                os.mkdir(d, 0o700)
        else:
            _remove(d)
            os.mkdir(d, 0o700)
        _copy_dir(s, d, links, plain)
        _copy_meta(s, d, st, plain)
        return
    _remove(d)
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in links:
        os.link(links[key], d)
        return
    if not _copy_node(s, d, st, plain):
        return
    _copy_meta(s, d, st, plain)
    if st.st_nlink > 1:
        links[key] = d


def _copy_node(src: str, dst: str, st: os.stat_result, plain: bool = False) -> bool:
    """Make ``dst`` a copy of ``src``; False when nothing was made."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(mode):
        _copy_file(src, dst, st.st_size)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        try:
            os.mknod(dst, mode, st.st_rdev)
        except PermissionError:
            if not plain:
                raise
            return False  # a device node of an export, as a user who may not make one
    else:
        return False  # sockets are not content
    return True


def _copy_file(src: str, dst: str, size: int) -> None:
    ins: list[int] = []  # each closed by its ``finally`` even if a Ctrl-C lands as it opens
    outs: list[int] = []
    try:
        fin = open_into(ins, src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fout = open_into(outs, dst, flags, 0o600)
            _copy_bytes(fin, fout, size)
        finally:
            for fd in outs:
                os.close(fd)
    finally:
        for fd in ins:
            os.close(fd)


def _copy_bytes(fin: int, fout: int, size: int) -> None:
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(fin, fout, size - done)
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        os.lseek(fin, done, os.SEEK_SET)
        os.lseek(fout, done, os.SEEK_SET)
        while chunk := os.read(fin, 1 << 20):
            os.write(fout, chunk)


#: xattrs a copy goes on without: those the file system or the caller may not set (and, for
#: a plain copy, those it may not read), as ``shutil.copy2`` does
_XATTR_SKIPPED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_XATTR_SKIPPED_PLAIN = (*_XATTR_SKIPPED, errno.EACCES, errno.ENODATA)


def _export_keeps(name: str) -> bool:
    return not name.startswith(OVERLAY_XATTR_PREFIXES)


def _copy_meta(src: str, dst: str, st: os.stat_result, plain: bool = False) -> None:
    link = stat.S_ISLNK(st.st_mode)
    if not plain:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    # a merge sets what an unpack would (a layer unpacked by an older kiln may have more)
    keep = _export_keeps if plain else layer_may_set
    for name in names:
        if not keep(name):
            continue
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as exc:
            if exc.errno not in (_XATTR_SKIPPED_PLAIN if plain else _XATTR_SKIPPED):
                raise
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
