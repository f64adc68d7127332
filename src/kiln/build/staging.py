"""Staging: a temporary tree holding exactly what a COPY/ADD may read from the context.

``BuildContext.staged`` walks the context (through its ``SafeRoot``) and hands each entry
to a ``Stager``, which writes it into the staging directory: directories are made, links
recreated verbatim (never followed), regular files hard linked (copied across file
systems). Both sides are reached through directory fds opened in-root (one resolution per
directory, not per file), and the final component is never followed on either side, so
neither a link in the context nor one already staged can send a read or a write
elsewhere. A symlink named as the source itself (``follow``) was resolved in-root by the
caller and its target's content is copied under the link's name.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable

from kiln.archive.safe_root import SafeRoot

__all__ = ["Stager"]

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _LastDir:
    """The fd of the last directory asked for (entries arrive grouped by directory)."""

    def __init__(self, root: SafeRoot):
        self.root = root
        self.rel: str | None = None
        self.fd = -1

    def get(self, rel: str) -> int:
        if rel != self.rel:
            self.close()
            self.fd = self.root.open_dir(rel)
            self.rel = rel
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.rel = -1, None


class Stager:
    """Writes context entries (given parents first) into the staging root ``dst``."""

    def __init__(
        self,
        src: SafeRoot,
        dst: SafeRoot,
        lstat: Callable[[str], os.stat_result | None],
        keep_owner: bool = False,
    ):
        """``keep_owner``: staged entries keep their owners (a stage's or image's rootfs,
        whose owners COPY --from keeps; run as root)."""
        self.src, self.dst, self.lstat = src, dst, lstat
        self.keep_owner = keep_owner and os.geteuid() == 0
        self._src_dir = _LastDir(src)
        self._dst_dir = _LastDir(dst)

    def close(self) -> None:
        self._src_dir.close()
        self._dst_dir.close()

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stage(self, rel: str, st: os.stat_result, follow: bool = False) -> None:
        """Stage entry ``rel`` listed as ``st``; the first entry staged at a path wins."""
        if not rel:
            return
        parent, name = posixpath.split(rel)
        try:
            dfd = self._dst_dir.get(parent)
        except (FileNotFoundError, NotADirectoryError):
            self._parents(parent)
            dfd = self._dst_dir.get(parent)
        try:
            os.stat(name, dir_fd=dfd, follow_symlinks=False)
            return
        except FileNotFoundError:
            pass
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, mode | 0o700, dir_fd=dfd)
            os.chmod(name, mode, dir_fd=dfd)  # the directory just made in our own tree
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
            self._own(name, dfd, st)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=self._src_dir.get(parent)), name, dir_fd=dfd)
            self._own(name, dfd, st)
        elif stat.S_ISREG(st.st_mode):
            if not follow:
                try:
                    sfd = self._src_dir.get(parent)
                    os.link(name, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
            self._copy(rel, name, dfd, follow)
            self._own(name, dfd, st)
        # sockets, devices and fifos in a context are not copied

    def _own(self, name: str, dfd: int, st: os.stat_result) -> None:
        if self.keep_owner:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):  # chown clears set-ID bits
                os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dfd)

    def _copy(self, rel: str, name: str, dfd: int, follow: bool) -> None:
        """Copy a regular file's content (never following or waiting on what is there)."""
        if follow:
            fd = self.src.open_regular(rel, follow=True)
        else:
            fd = os.open(name, _READ, dir_fd=self._src_dir.get(posixpath.dirname(rel)))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            out = os.open(name, _WRITE, 0o600, dir_fd=dfd)
            try:
                while os.sendfile(out, fd, None, 1 << 30):
                    pass
                os.fchmod(out, stat.S_IMODE(st.st_mode))
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(fd)

    def _parents(self, rel_dir: str) -> None:
        """Make the staged parents of an entry: a directory of the context keeps its mode
        and times; any other component (a link followed on the source's path) becomes a
        plain directory."""
        parts = [p for p in rel_dir.split("/") if p]
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            st = self.lstat(rel)
            if st is not None and stat.S_ISDIR(st.st_mode):
                self.stage(rel, st)
            else:
                self.dst.makedirs(rel)
