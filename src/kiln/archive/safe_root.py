"""Writes confined to a directory tree, through a directory fd of its root.

Every path is resolved by the kernel relative to the root fd: ``openat2`` with
``RESOLVE_IN_ROOT`` (symlinks, absolute ones included, and ``..`` are resolved
as if the root were ``/``), or, where openat2 is missing, a component-by-component
walk with ``O_NOFOLLOW`` that follows symlinks itself, in-root. There is no
``realpath`` prefix check anywhere. The parent of a path's final component is
resolved in-root; the final component is never followed when it is a symlink
(operations replace or act on the link itself). Names are normalised
lexically first, so ``/``, ``./`` and ``..`` can never leave the root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import posixpath
import stat
from dataclasses import dataclass, field

from kiln.archive.streams import ByteReader
from kiln.errors import InvalidArgument
from kiln.util.atomic import start_writeback

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_MAX_SYMLINKS = 40
_CHUNK = 1 << 20
_WRITEBACK_MIN = 256 << 10


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = None
_openat2_ok: bool | None = None if platform.machine() in ("x86_64", "aarch64") else False


def _openat2(
    dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = RESOLVE_IN_ROOT
) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a concurrent rename raced the lookup; retry
        fd = _libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(dirfd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def openat2_available() -> bool:
    """Whether this kernel offers openat2 (probed once)."""
    global _openat2_ok
    if _openat2_ok is None:
        try:
            os.close(_openat2(-100, "/", os.O_PATH))  # AT_FDCWD
            _openat2_ok = True
        except OSError:
            _openat2_ok = False
    return _openat2_ok


def split_path(rel: str) -> list[str]:
    """Lexically normalised components of ``rel``; never above the root."""
    if "\x00" in rel:
        raise InvalidArgument(f"path {rel!r} contains a NUL byte")
    norm = posixpath.normpath("/" + rel)
    return [part for part in norm.split("/") if part]


class FileRefused(InvalidArgument):
    """A file of the root that :meth:`SafeRoot.read_regular` will not read (``reason`` says
    why: a FIFO, a device, too large...)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def kind_of(mode: int) -> str:
    """ "a FIFO", "a directory"... for an error message."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@dataclass
class Followed:
    """Where a path led inside a root (see :meth:`SafeRoot.follow`)."""

    path: str  # absolute, in-root, no symlinks left in it
    exists: bool
    created: list[str] = field(default_factory=list)  # in-root paths made on the way
    is_dir: bool = False


class SafeRoot:
    """A directory tree that every operation stays inside. Use as a context manager."""

    def __init__(self, root_path: str, *, use_openat2: bool | None = None):
        self.path = root_path
        self.fd = os.open(root_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._openat2 = openat2_available() if use_openat2 is None else use_openat2

    def __enter__(self) -> SafeRoot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- resolution -----------------------------------------------------------------

    def _open(self, parts: list[str], flags: int, *, beneath: bool = False) -> int:
        """Open ``parts`` resolved in-root, following symlinks (also the last one).

        ``beneath``: a symlink that would leave the root (absolute, or ``..`` above it) is
        refused with EXDEV instead of being resolved as if the root were ``/``."""
        if self._openat2:
            resolve = RESOLVE_BENEATH if beneath else RESOLVE_IN_ROOT
            return _openat2(self.fd, "/".join(parts) or ".", flags, resolve=resolve)
        return self._walk(parts, flags, beneath)

    def _walk(self, parts: list[str], flags: int, beneath: bool = False) -> int:
        stack = [os.dup(self.fd)]
        todo = list(parts)
        links = 0
        try:
            while todo:
                name = todo.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    elif beneath:
                        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/".join(parts))
                    continue
                try:
                    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                except OSError as exc:
                    exc.filename = "/".join(parts)
                    raise
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode):
                    os.close(fd)
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts))
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/") and beneath:
                        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/".join(parts))
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo[:0] = target.split("/")
                    continue
                if todo and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts))
                stack.append(fd)
            last = stack.pop()
            if flags & os.O_DIRECTORY and not stat.S_ISDIR(os.fstat(last).st_mode):
                os.close(last)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts))
            if flags & os.O_PATH:
                return last
            try:  # reopen the resolved object with the wanted access mode
                return os.open(f"/proc/self/fd/{last}", flags | os.O_CLOEXEC)
            finally:
                os.close(last)
        finally:
            for fd in stack:
                os.close(fd)

    def _parent(self, rel: str) -> tuple[int, str]:
        """(fd of the in-root parent directory, final name); the caller closes the fd."""
        parts = split_path(rel)
        if not parts:
            raise InvalidArgument("the operation needs a path below the root, not the root itself")
        fd = self._open(parts[:-1], os.O_PATH | os.O_DIRECTORY)
        return fd, parts[-1]

    def open_dir(self, rel: str) -> int:
        """A readable O_DIRECTORY fd of ``rel`` resolved in-root (caller closes it)."""
        return self._open(split_path(rel), os.O_RDONLY | os.O_DIRECTORY)

    def open_path(self, rel: str, *, follow: bool = False, beneath: bool = False) -> int:
        """An O_PATH fd of ``rel``; the final symlink is followed in-root only if ``follow``.
        ``beneath``: a symlink leading out of the root is refused (EXDEV), not clamped."""
        parts = split_path(rel)
        if follow or not parts:
            return self._open(parts, os.O_PATH, beneath=beneath)
        pfd, name = self._parent(rel)
        try:
            return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)

    # -- reading --------------------------------------------------------------------

    def stat(self, rel: str, *, follow: bool = False) -> os.stat_result:
        """``lstat``, or with ``follow`` the stat of what ``rel`` resolves to in-root."""
        if not follow:
            return self.lstat(rel)
        fd = self._open(split_path(rel), os.O_PATH)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def readlink(self, rel: str) -> str:
        """The target of symlink ``rel`` (its parent resolved in-root), never followed."""
        pfd, name = self._parent(rel)
        try:
            return os.readlink(name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def open_regular(self, rel: str, *, follow: bool = False, beneath: bool = False) -> int:
        """A read-only fd of the regular file ``rel`` (caller closes it).

        The final symlink is never followed unless ``follow`` (then in-root, or with
        ``beneath`` refused with EXDEV if it leaves the root); a symlink, directory, FIFO or
        device raises OSError (ELOOP or EINVAL) without being opened for reading, so a
        source swapped for a symlink or a FIFO is neither followed nor waited on."""
        parts = split_path(rel)
        if follow or not parts:
            pfd = self._open(parts, os.O_PATH, beneath=beneath)
        else:
            pfd = self.open_path(rel)
        try:
            st = os.fstat(pfd)
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, "is a symbolic link", rel)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)

    # -- queries --------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result:
        if not split_path(rel):
            return os.fstat(self.fd)
        pfd, name = self._parent(rel)
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def exists(self, rel: str) -> bool:
        try:
            self.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def read_regular(self, rel: str, limit: int) -> bytes | None:
        """The bytes of the regular file ``rel`` (symlinks followed in-root), None if missing.

        A FIFO (which would block), a device (a host disk, a terminal), a socket or a
        directory is never opened for reading (:meth:`open_regular` checks again on the fd it
        opens): they, and a file over ``limit`` bytes, raise :class:`FileRefused`.
        """
        try:
            st = self.stat(rel, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(rel, f"it is {kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileRefused(rel, f"it is larger than {limit} bytes")
        try:
            fd = self.open_regular(rel, follow=True)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            raise FileRefused(rel, "it is not a regular file") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise FileRefused(rel, f"it is larger than {limit} bytes")
        return data

    def listdir(self, rel: str) -> list[str]:
        fd = self.open_dir(rel)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def follow(self, rel: str, *, create_parents: bool = False, mode: int = 0o755) -> Followed:
        """Where ``rel`` leads inside the root, every symlink followed in-root (the final one
        too, dangling or not), as an absolute in-root path free of symlinks.

        The object at the end need not exist (``Followed.exists``). With ``create_parents``,
        missing directories on the way are made (``mode``) and listed in ``created``, parents
        first, so a dangling ``/app -> /data`` followed by ``/app/x`` makes ``/data``. A loop
        raises ``ELOOP`` and a non-directory in the middle ``ENOTDIR``, both naming the
        in-root path reached.
        """
        todo = split_path(rel)
        names: list[str] = []
        stack = [os.dup(self.fd)]
        created: list[str] = []
        links = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                        names.pop()
                    continue
                here = "/" + "/".join([*names, name])
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if not todo:
                        return Followed(here, False, created)
                    if not create_parents:
                        raise FileNotFoundError(
                            errno.ENOENT, os.strerror(errno.ENOENT), here
                        ) from None
                    os.mkdir(name, mode, dir_fd=stack[-1])
                    created.append(here)
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", here)
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                    todo[:0] = [p for p in target.split("/") if p and p != "."]
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    if not todo:
                        return Followed(here, True, created, is_dir=False)
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", here)
                flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                stack.append(os.open(name, flags, dir_fd=stack[-1]))
                names.append(name)
            return Followed("/" + "/".join(names), True, created, is_dir=True)
        finally:
            for fd in stack:
                os.close(fd)

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
            pfd, name = self._parent(found.path)
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            finally:
                os.close(pfd)
            found.created.append(found.path)
            found.exists = found.is_dir = True
        return found

    def makedirs(self, rel: str, mode: int = 0o755, _depth: int = 0) -> None:
        """Create ``rel`` and missing parents.

        Existing symlinks along the way are followed in-root; a dangling one gets
        its target created inside the root (as ``a -> /etc`` then ``a/x`` makes
        ``<root>/etc/x``).
        """
        if _depth > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
        parts = split_path(rel)
        for i in range(1, len(parts) + 1):
            try:
                os.close(self._open(parts[:i], os.O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            pfd = self._open(parts[: i - 1], os.O_PATH | os.O_DIRECTORY)
            try:
                os.mkdir(parts[i - 1], mode, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(parts[i - 1], dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                target = os.readlink(parts[i - 1], dir_fd=pfd)
                base = "" if target.startswith("/") else "/".join(parts[: i - 1])
                self.makedirs(base + "/" + target, mode, _depth + 1)
            finally:
                os.close(pfd)

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
        pfd, name = self._parent(rel)
        try:
            self._clear_final(pfd, name)
            os.mkdir(name, mode, dir_fd=pfd)
        except IsADirectoryError:
            pass
        finally:
            os.close(pfd)

    def open_file_for_write(self, rel: str, mode: int = 0o644) -> int:
        """A new, truncated regular file (an existing non-directory is unlinked first)."""
        pfd, name = self._parent(rel)
        try:
            self._clear_final(pfd, name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, mode & 0o777, dir_fd=pfd)
        finally:
            os.close(pfd)
        os.fchmod(fd, mode & 0o7777)
        return fd

    #: ``write_file`` starts the writeback of each file of at least ``_WRITEBACK_MIN`` bytes as
    #: it closes it (``start_writeback``): for trees that are synced before they are trusted
    #: (an unpacked layer); small files are left to that sync (one syscall each saved)
    writeback = False

    def write_file(self, rel: str, src_stream: ByteReader, mode: int = 0o644) -> int:
        """Write ``src_stream`` to ``rel`` in chunks; returns the bytes written."""
        fd = self.open_file_for_write(rel, mode)
        total = 0
        try:
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
            os.close(fd)
        return total

    def symlink(self, target: str, rel: str) -> None:
        """Create symlink ``rel`` -> ``target`` (target stored verbatim, never followed here)."""
        if "\x00" in target:
            raise InvalidArgument(f"symlink target {target!r} contains a NUL byte")
        pfd, name = self._parent(rel)
        try:
            self._clear_final(pfd, name)
            os.symlink(target, name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def hardlink(self, existing_rel: str, rel: str) -> None:
        """Hard link ``rel`` to ``existing_rel``; both resolved in-root, neither end followed."""
        spfd, sname = self._parent(existing_rel)
        try:
            dpfd, dname = self._parent(rel)
            try:
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
                os.close(dpfd)
        finally:
            os.close(spfd)

    def mknod(self, rel: str, mode: int, dev: int = 0) -> None:
        pfd, name = self._parent(rel)
        try:
            self._clear_final(pfd, name)
            os.mknod(name, mode, dev, dir_fd=pfd)
        finally:
            os.close(pfd)

    def mkfifo(self, rel: str, mode: int = 0o644) -> None:
        pfd, name = self._parent(rel)
        try:
            self._clear_final(pfd, name)
            os.mkfifo(name, mode & 0o777, dir_fd=pfd)
        finally:
            os.close(pfd)

    # -- removal --------------------------------------------------------------------

    def remove(self, rel: str, *, missing_ok: bool = True) -> None:
        """Remove a file, link or whole directory tree (the final symlink itself, never its target)."""
        pfd, name = self._parent(rel)
        try:
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
            os.close(pfd)

    def clear_dir(self, rel: str, keep=None) -> None:
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
        pfd, name = self._parent(rel)
        try:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, dir_fd=pfd)
        finally:
            os.close(pfd)

    # -- metadata -------------------------------------------------------------------

    def chown(self, rel: str, uid: int, gid: int, follow: bool = False) -> None:
        if follow:
            fd = self.open_path(rel, follow=True)
            try:
                os.chown(f"/proc/self/fd/{fd}", uid, gid)
            finally:
                os.close(fd)
            return
        if not split_path(rel):
            os.chown(f"/proc/self/fd/{self.fd}", uid, gid)
            return
        pfd, name = self._parent(rel)
        try:
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def chmod(self, rel: str, mode: int) -> None:
        """Set permission bits (incl. setuid/setgid/sticky); a symlink is left alone."""
        fd = self.open_path(rel)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return
            os.chmod(f"/proc/self/fd/{fd}", mode & 0o7777)
        finally:
            os.close(fd)

    def utime(self, rel: str, atime_ns: int, mtime_ns: int, follow: bool = False) -> None:
        if follow or not split_path(rel):
            fd = self.open_path(rel, follow=True)
            try:
                os.utime(f"/proc/self/fd/{fd}", ns=(atime_ns, mtime_ns))
            finally:
                os.close(fd)
            return
        pfd, name = self._parent(rel)
        try:
            os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def setxattr(self, rel: str, name: str, value: bytes) -> None:
        """Set an extended attribute on ``rel`` itself (not on a symlink's target)."""
        fd = self.open_path(rel)
        try:
            os.setxattr(f"/proc/self/fd/{fd}", name, value)
        finally:
            os.close(fd)

    def getxattr(self, rel: str, name: str) -> bytes | None:
        fd = self.open_path(rel)
        try:
            return os.getxattr(f"/proc/self/fd/{fd}", name)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return None
            raise
        finally:
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


__all__ = [
    "FileRefused",
    "Followed",
    "OpenHow",
    "SafeRoot",
    "openat2_available",
    "kind_of",
    "split_path",
]
