"""Merge overlay-format layer directories into one plain tree (the copy driver).

Layers are applied bottom first: a 0/0 character device deletes the path
below it, a directory marked ``trusted.overlay.opaque`` (or ``user.``) hides
what lower layers had in it. Files are copied with ``copy_file_range`` (a
reflink on filesystems that can), with owner, mode, times and xattrs kept and
hard links inside a layer preserved.

Cost: every prepare copies the whole image (time and disk proportional to its
size), where an overlay mount costs nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from kiln.archive.changes import is_opaque, is_whiteout

_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


def merge_layers(layers_top_first: list[str], dest: str) -> None:
    """Build the merged view of ``layers_top_first`` in ``dest`` (an existing directory)."""
    for layer in reversed(layers_top_first):
        _copy_dir(layer, dest, {})
        _copy_meta(layer, dest, os.lstat(layer))


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        s, d = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if is_whiteout(st):
            _remove(d)
            continue
        if stat.S_ISDIR(st.st_mode):
            if os.path.isdir(d) and not os.path.islink(d):
                if is_opaque(s):
                    shutil.rmtree(d)
                    os.mkdir(d, 0o700)
            else:
                _remove(d)
                os.mkdir(d, 0o700)
            _copy_dir(s, d, links)
            _copy_meta(s, d, st)
            continue
        _remove(d)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], d)
            continue
        _copy_node(s, d, st)
        _copy_meta(s, d, st)
        if st.st_nlink > 1:
            links[key] = d


def _copy_node(src: str, dst: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(mode):
        _copy_file(src, dst, st.st_size)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(dst, mode, st.st_rdev)
    elif stat.S_ISSOCK(mode):
        return  # sockets are not content


def _copy_file(src: str, dst: str, size: int) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
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
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    link = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            continue
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
