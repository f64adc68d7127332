"""Writes confined to a directory tree, through a directory fd of its root.

``SafeRoot`` is ``kiln.util.inroot.InRoot`` (the one in-root resolver: ``openat2`` with
``RESOLVE_IN_ROOT``, or a component-by-component ``O_NOFOLLOW`` walk) plus the writes a
layer applier and COPY need. The parent of a path's final component is resolved in-root;
the final component is never followed when it is a symlink (operations replace or act on
the link itself). Names are normalised lexically first, so ``/``, ``./`` and ``..`` can
never leave the root. There is no ``realpath`` prefix check anywhere.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from kiln.archive.streams import ByteReader
from kiln.errors import InvalidArgument
from kiln.util.atomic import start_writeback
from kiln.util.inroot import MAX_SYMLINKS, Followed, InRoot, split_path
from kiln.util.owned_open import open_into

_CHUNK = 1 << 20
_WRITEBACK_MIN = 256 << 10


class SafeRoot(InRoot):
    """A directory tree that every operation, reads and writes, stays inside. Use as a
    context manager."""

    _keep_parent = False
    _kept_where = ""  # the parent path of the last operation, whose O_PATH fd is kept

    def keep_parent(self) -> None:
        """Reuse the parent directory's fd while operations stay in one directory (a layer's
        consecutive entries): ~4 fewer syscalls each, and no path walk.

        Only a parent reached without any symlink is kept (``RESOLVE_NO_SYMLINKS``), so
        its path names the same directory until something changes one of its ancestors;
        every change goes through :meth:`_parent_into` of the changed entry, whose parent is
        then another path, which drops the kept fd first. Needs openat2.
        """
        self._keep_parent = (
            self._openat2
        )  # ``_parent_into`` keeps its fd in ``_kept``, opened into it

    def _parent_into(self, fds: list[int], rel: str) -> tuple[int, str]:
        if not self._keep_parent:
            return self._open_parent_into(fds, rel)
        parts = split_path(rel)
        if not parts:
            return self._open_parent_into(fds, rel)  # raises
        where = "/".join(parts[:-1])
        kept = self._kept
        if kept:
            if self._kept_where == where:
                return kept[0], parts[-1]
            fd = kept[0]
            del kept[:]  # no call between this and the close: no point a signal lands at
            os.close(fd)
        self._kept_where = where
        try:
            fd = self._open_dir_without_symlinks(where, kept)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return self._open_parent_into(fds, rel)  # a symlink on the way: anew each time
        return fd, parts[-1]

    # -- creation -------------------------------------------------------------------

    def makedirs_following(self, rel: str, mode: int = 0o755) -> Followed:
        """Make ``rel`` a directory the way a container sees it: symlinks on the way and at
        the end are followed in-root and their targets created (never replaced by a
        directory), as buildah and Docker do for WORKDIR, VOLUME and COPY destinations.

        Returns where it led (``path``) and what was created, parents first. An existing
        non-directory at the end raises ``ENOTDIR`` naming its in-root path.
        """
        found = self.follow(rel, create_parents=True, mode=mode)
        if found.exists and not found.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", found.path)
        if not found.exists:
            pfds: list[int] = []
            try:
                pfd, name = self._parent_into(pfds, found.path)
                os.mkdir(name, mode, dir_fd=pfd)
            finally:
                for parent_fd in pfds:
                    os.close(parent_fd)
            found.created.append(found.path)
            found.exists = found.is_dir = True
        return found

    def makedirs(self, rel: str, mode: int = 0o755, _depth: int = 0) -> None:
        """Create ``rel`` and missing parents.

        Existing symlinks along the way are followed in-root; a dangling one gets
        its target created inside the root (as ``a -> /etc`` then ``a/x`` makes
        ``<root>/etc/x``).
        """
        if _depth > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
        parts = split_path(rel)
        if self._keep_parent and self._kept and self._kept_where == "/".join(parts):
            return  # the kept parent: a directory, reached without symlinks, still there
        for i in range(1, len(parts) + 1):
            fds: list[int] = []
            try:
                self._open(parts[:i], os.O_PATH | os.O_DIRECTORY, into=fds)
                continue
            except FileNotFoundError:
                pass
            finally:
                for fd in fds:
                    os.close(fd)
            pfds: list[int] = []
            try:
                pfd = self._open(parts[: i - 1], os.O_PATH | os.O_DIRECTORY, into=pfds)
                os.mkdir(parts[i - 1], mode, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(parts[i - 1], dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                target = os.readlink(parts[i - 1], dir_fd=pfd)
                base = "" if target.startswith("/") else "/".join(parts[: i - 1])
                self.makedirs(base + "/" + target, mode, _depth + 1)
            finally:
                for fd in pfds:
                    os.close(fd)

    def _clear_final(self, pfd: int, name: str) -> None:
        """Remove a non-directory final component so it can be replaced."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        os.unlink(name, dir_fd=pfd)

    def mkdir(self, rel: str, mode: int = 0o755) -> None:
        """Create one directory (parent must exist); replaces a non-directory."""
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            self._clear_final(pfd, name)
            os.mkdir(name, mode, dir_fd=pfd)
        except IsADirectoryError:
            pass
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def open_file_for_write(self, rel: str, mode: int = 0o644) -> int:
        """A new, truncated regular file (an existing non-directory is unlinked first)."""
        fds: list[int] = []
        try:
            return self.open_file_for_write_into(fds, rel, mode)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def open_file_for_write_into(self, fds: list[int], rel: str, mode: int) -> int:
        """``open_file_for_write``, its fd appended to ``fds`` as it opens (``owned_open``)."""
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            self._clear_final(pfd, name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = open_into(fds, name, flags, mode & 0o777, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)
        os.fchmod(fd, mode & 0o7777)
        return fd

    #: ``write_file`` starts the writeback of each file of at least ``_WRITEBACK_MIN`` bytes as
    #: it closes it (``start_writeback``): for trees that are synced before they are trusted
    #: (an unpacked layer); small files are left to that sync (one syscall each saved)
    writeback = False

    def write_file(self, rel: str, src_stream: ByteReader, mode: int = 0o644) -> int:
        """Write ``src_stream`` to ``rel`` in chunks; returns the bytes written."""
        fds: list[int] = []
        total = 0
        try:
            fd = self.open_file_for_write_into(fds, rel, mode)
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            readinto = getattr(src_stream, "readinto", None)
            while True:
                data: memoryview | bytes
                if readinto is not None:
                    n = readinto(view)
                    data = view[:n]
                else:
                    data = src_stream.read(_CHUNK)
                    n = len(data)
                if not n:
                    break
                written = 0
                while written < n:
                    written += os.write(fd, data[written:])
                total += n
            if self.writeback and total >= _WRITEBACK_MIN:
                start_writeback(fd)
        finally:
            for fd in fds:
                os.close(fd)
        return total

    def symlink(self, target: str, rel: str) -> None:
        """Create symlink ``rel`` -> ``target`` (target stored verbatim, never followed here)."""
        if "\x00" in target:
            raise InvalidArgument(f"symlink target {target!r} contains a NUL byte")
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            self._clear_final(pfd, name)
            os.symlink(target, name, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def hardlink(self, existing_rel: str, rel: str) -> None:
        """Hard link ``rel`` to ``existing_rel``; both resolved in-root, neither end followed."""
        spfds: list[int] = []
        try:
            # not the kept one: rel's may replace it
            spfd, sname = self._open_parent_into(spfds, existing_rel)
            dpfds: list[int] = []
            try:
                dpfd, dname = self._parent_into(dpfds, rel)
                src = os.stat(sname, dir_fd=spfd, follow_symlinks=False)
                try:
                    dst = os.stat(dname, dir_fd=dpfd, follow_symlinks=False)
                    if (dst.st_dev, dst.st_ino) == (src.st_dev, src.st_ino):
                        return
                except FileNotFoundError:
                    pass
                self._clear_final(dpfd, dname)
                os.link(sname, dname, src_dir_fd=spfd, dst_dir_fd=dpfd, follow_symlinks=False)
            finally:
                for parent_fd in dpfds:
                    os.close(parent_fd)
        finally:
            for fd in spfds:
                os.close(fd)

    def mknod(self, rel: str, mode: int, dev: int = 0) -> None:
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            self._clear_final(pfd, name)
            os.mknod(name, mode, dev, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def mkfifo(self, rel: str, mode: int = 0o644) -> None:
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            self._clear_final(pfd, name)
            os.mkfifo(name, mode & 0o777, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    # -- removal --------------------------------------------------------------------

    def remove(self, rel: str, *, missing_ok: bool = True) -> None:
        """Remove a file, link or whole directory tree (the final symlink itself, never its target)."""
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                if missing_ok:
                    return
                raise
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(pfd, name)
            else:
                os.unlink(name, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def clear_dir(self, rel: str, keep: Callable[[str], bool] | None = None) -> None:
        """Remove entries of directory ``rel``; ``keep(name)`` true spares an entry."""
        dfd = self._open_dir_nofollow(rel)
        try:
            for name in os.listdir(dfd):
                if keep is not None and keep(name):
                    continue
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    _remove_tree(dfd, name)
                else:
                    os.unlink(name, dir_fd=dfd)
        finally:
            os.close(dfd)

    def _open_dir_nofollow(self, rel: str) -> int:
        if not split_path(rel):
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    # -- metadata -------------------------------------------------------------------

    def chown(self, rel: str, uid: int, gid: int, follow: bool = False) -> None:
        if follow:
            fds: list[int] = []
            try:
                fd = self.open_path_into(fds, rel, follow=True)
                os.chown(f"/proc/self/fd/{fd}", uid, gid)
            finally:
                for fd in fds:
                    os.close(fd)
            return
        if not split_path(rel):
            os.chown(f"/proc/self/fd/{self.fd}", uid, gid)
            return
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def chmod(self, rel: str, mode: int) -> None:
        """Set permission bits (incl. setuid/setgid/sticky); a symlink is left alone."""
        fds: list[int] = []
        try:
            fd = self.open_path_into(fds, rel)
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return
            os.chmod(f"/proc/self/fd/{fd}", mode & 0o7777)
        finally:
            for fd in fds:
                os.close(fd)

    def utime(self, rel: str, atime_ns: int, mtime_ns: int, follow: bool = False) -> None:
        if follow or not split_path(rel):
            fds: list[int] = []
            try:
                fd = self.open_path_into(fds, rel, follow=True)
                os.utime(f"/proc/self/fd/{fd}", ns=(atime_ns, mtime_ns))
            finally:
                for fd in fds:
                    os.close(fd)
            return
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def setxattr(self, rel: str, name: str, value: bytes) -> None:
        """Set an extended attribute on ``rel`` itself (not on a symlink's target)."""
        fds: list[int] = []
        try:
            fd = self.open_path_into(fds, rel)
            os.setxattr(f"/proc/self/fd/{fd}", name, value)
        finally:
            for fd in fds:
                os.close(fd)

    def getxattr(self, rel: str, name: str) -> bytes | None:
        fds: list[int] = []
        try:
            fd = self.open_path_into(fds, rel)
            try:
                return os.getxattr(f"/proc/self/fd/{fd}", name)
            except OSError as exc:
                if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                    return None
                raise
        finally:
            for fd in fds:
                os.close(fd)


def _remove_tree(pfd: int, name: str) -> None:
    """Remove directory ``name`` under ``pfd`` and everything in it, never following links."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    dfd = os.open(name, flags, dir_fd=pfd)
    try:
        for child in os.listdir(dfd):
            st = os.stat(child, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(dfd, child)
            else:
                os.unlink(child, dir_fd=dfd)
    finally:
        os.close(dfd)
    os.rmdir(name, dir_fd=pfd)


__all__ = ["SafeRoot"]
