"""The one in-root path resolver: a path that untrusted input names (an image's rootfs, a
build context, a layer tar) resolved inside a directory tree, never out of it.

Every lookup starts at a directory fd of the root. ``openat2`` with ``RESOLVE_IN_ROOT``
has the kernel resolve symlinks, absolute ones included, and ``..`` as if the root were
``/``; where openat2 is missing, one walk (:meth:`InRoot._walk_into`) does the same by hand,
component by component with ``O_NOFOLLOW``, reading each symlink and resolving its target
in-root. With ``beneath`` a link that would leave the root (absolute, or ``..`` above it)
is refused with EXDEV instead of being resolved as if the root were ``/``. There is no
``realpath`` prefix check anywhere.

A name is normalised lexically first (:func:`split_path`), so ``/``, ``./`` and ``..`` in
it never climb above the root, as Docker, buildah and runc clean the paths they are given;
``..`` inside a symlink's target is resolved physically (the parent of the directory the
walk reached), clamped at the root.

Users: ``kiln.archive.safe_root.SafeRoot`` adds the writes (layer applier, COPY/ADD, the
build context's staging); the runtime (mountpoints, chroot mounts, user lookup, the exec
check) and the build context read and resolve through it directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import posixpath
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import field
from typing import Any, Self

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass
from kiln.util.owned_open import open_into

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
#: the most symlinks one resolution follows (Linux's limit)
MAX_SYMLINKS = 40
_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = None
_openat2_ok: bool | None = None if platform.machine() in ("x86_64", "aarch64") else False


def _openat2(
    dirfd: int,
    path: str,
    flags: int,
    mode: int = 0,
    resolve: int = RESOLVE_IN_ROOT,
    into: list[int] | None = None,
) -> int:
    """openat2(2); with ``into``, the descriptor is appended to it as the system call
    returns, before a Ctrl-C can land (see ``util.owned_open``)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve | RESOLVE_NO_MAGICLINKS)
    args = (
        (_SYS_OPENAT2,),
        (ctypes.c_int(dirfd),),
        (ctypes.c_char_p(os.fsencode(path)),),
        (ctypes.byref(how),),
        (ctypes.c_size_t(ctypes.sizeof(how)),),
    )
    fds = [] if into is None else into
    for _ in range(16):  # EAGAIN: a concurrent rename raced the lookup; retry
        fds += map(_libc.syscall, *args)
        if fds[-1] >= 0:
            return fds[-1]
        del fds[-1]
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
    """A file of the root that :meth:`InRoot.read_regular` will not read (``reason`` says
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
    """Where a path led inside a root (see :meth:`InRoot.follow`)."""

    path: str  # absolute, in-root, no symlinks left in it
    exists: bool
    created: list[str] = field(default_factory=list)  # in-root paths made on the way
    is_dir: bool = False


@dataclass
class _Walk:
    """Where a walk got to: open directory fds from the root down (``stack``), their
    names, and the final component (``last``: "" when the walk ended in the directory on
    top of the stack; then ``fd`` is None). Made by the caller before the ``try`` whose
    ``finally`` closes it, and every fd opened straight into its lists
    (``util.owned_open``), so a Ctrl-C anywhere in the walk leaves none open."""

    stack: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    last: str = ""
    opened: list[int] = field(default_factory=list)  # the component's O_PATH fd, at most one

    @property
    def fd(self) -> int | None:
        """The O_PATH fd of ``last``, None when it is missing."""
        return self.opened[0] if self.opened else None

    def path(self, name: str = "") -> str:
        return "/" + "/".join([*self.names, name] if name else self.names)

    def up(self) -> None:
        fd = self.stack[-1]
        del self.stack[-1]  # no call between this and the close: no point a signal lands at
        os.close(fd)
        self.names.pop()

    def to_root(self) -> None:
        while len(self.stack) > 1:
            self.up()

    def close(self) -> None:
        for fds in (self.stack, self.opened):
            _close_each(fds)


def _close_each(fds: list[int]) -> None:
    """Close and empty ``fds``: a Ctrl-C at one close, or between two, still closes the
    rest (no hold: ~20 us, as much as a whole walk)."""
    try:
        while fds:
            fd = fds[-1]
            del fds[-1]  # no call between this and the close: no point a signal lands at
            os.close(fd)
    finally:
        while fds:
            fd = fds[-1]
            del fds[-1]
            os.close(fd)


class InRoot:
    """A directory tree every lookup stays inside. Use as a context manager.

    The root fd is opened once; a process that changes mount namespace (the chroot
    isolation's init) opens its own ``InRoot`` after the change, since lookups from an fd
    see the mounts of the namespace it was opened in."""

    def __init__(
        self,
        root_path: str,
        *,
        use_openat2: bool | None = None,
        _owner: list[int] | None = None,
    ):
        self.path = root_path
        self._openat2 = openat2_available() if use_openat2 is None else use_openat2
        # the root's fd, opened straight into it: ``opened``'s, which its ``finally`` closes
        # if the root is not closed, or the root's own
        self._root_fds = [] if _owner is None else _owner
        self._kept: list[int] = []  # a parent's fd kept for the next call (``SafeRoot``)
        try:
            self.fd = open_into(
                self._root_fds, root_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except BaseException:
            self.close()
            raise

    @classmethod
    @contextlib.contextmanager
    def opened(cls, root_path: str, **kwargs: Any) -> Iterator[Self]:
        """``with cls(root_path, ...) as root``, where a Ctrl-C landing as the root is made,
        before the ``with`` has it, closes the root's fd too."""
        fds: list[int] = []
        try:
            with cls(root_path, _owner=fds, **kwargs) as root:
                yield root
        finally:
            for fd in fds:  # only if the root was not closed
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        kept, fds = self._kept, self._root_fds
        try:
            if kept:
                fd = kept[0]
                del kept[:]  # no call between this and the close: no point a signal lands at
                os.close(fd)
        finally:
            if fds:
                fd = fds[0]
                del fds[:]
                self.fd = -1
                os.close(fd)

    # -- resolution -----------------------------------------------------------------

    def _walk_into(
        self, walk: _Walk, parts: list[str], beneath: bool, create_parents: bool, mode: int
    ) -> None:
        """Resolve ``parts`` in-root by hand, into ``walk`` (the caller's ``finally`` closes it).

        Each component is opened ``O_PATH | O_NOFOLLOW`` relative to the directory reached
        and checked on that fd, so a component swapped meanwhile is never followed out.
        Every symlink, the final one too, is read and its target resolved in-root
        (absolute: from the root; with ``beneath`` refused, EXDEV). A missing final
        component ends the walk (``fd`` None); a missing directory on the way raises
        FileNotFoundError, or with ``create_parents`` is made (``mode``) and recorded. A
        loop raises ELOOP and a non-directory on the way ENOTDIR, naming the in-root path
        reached."""
        stack, names, opened = walk.stack, walk.names, walk.opened
        stack += map(os.dup, (self.fd,))
        todo = deque(parts)
        links = 0
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    walk.up()
                elif beneath:
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), walk.path(name))
                continue
            try:
                fd = open_into(opened, name, _PATH_NOFOLLOW, dir_fd=stack[-1])
            except FileNotFoundError:
                if not todo:
                    walk.last = name
                    return
                if not create_parents:
                    raise FileNotFoundError(
                        errno.ENOENT, os.strerror(errno.ENOENT), walk.path(name)
                    ) from None
                try:
                    os.mkdir(name, mode, dir_fd=stack[-1])
                    walk.created.append(walk.path(name))
                except FileExistsError:
                    pass  # made meanwhile: look at what is there now
                fd = open_into(opened, name, _PATH_NOFOLLOW, dir_fd=stack[-1])
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind == stat.S_IFDIR:
                stack += opened  # moved, with no point between
                del opened[:]
                names.append(name)
                continue
            if kind == stat.S_IFLNK:
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", walk.path(name))
                target = os.readlink("", dir_fd=fd)  # the link opened, not a swap
                del opened[:]  # no call between this and the close
                os.close(fd)
                if target.startswith("/"):
                    if beneath:
                        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), walk.path(name))
                    walk.to_root()
                todo.extendleft(reversed([p for p in target.split("/") if p and p != "."]))
                continue
            if todo:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", walk.path(name))
            walk.last = name
            return

    def _open(
        self, parts: list[str], flags: int, *, beneath: bool = False, into: list[int] | None = None
    ) -> int:
        """Open ``parts`` resolved in-root, following symlinks (also the last one).

        ``beneath``: a symlink that would leave the root (absolute, or ``..`` above it) is
        refused with EXDEV instead of being resolved as if the root were ``/``. ``into``:
        the fd is appended to it, as it opens with openat2 (``_openat2``); after the walk
        by hand without it."""
        if self._openat2:
            resolve = RESOLVE_BENEATH if beneath else RESOLVE_IN_ROOT
            return _openat2(self.fd, "/".join(parts) or ".", flags, resolve=resolve, into=into)
        return self._open_walked(parts, flags, beneath, [] if into is None else into)

    def _open_walked(self, parts: list[str], flags: int, beneath: bool, into: list[int]) -> int:
        asked = "/".join(parts)
        walk = _Walk()
        found: list[int] = []  # the resolved object's O_PATH fd, moved out of the walk
        try:
            try:
                try:
                    self._walk_into(walk, parts, beneath, False, 0)
                except OSError as exc:
                    exc.filename = asked  # as openat2 names it
                    raise
                if not walk.last:  # a directory: the one the walk ended in
                    found += walk.stack[-1:]  # moved, with no point between
                    del walk.stack[-1]
                elif not walk.opened:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), asked)
                else:
                    found += walk.opened
                    del walk.opened[:]
            finally:
                walk.close()
            if flags & os.O_DIRECTORY and not stat.S_ISDIR(os.fstat(found[0]).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), asked)
            if flags & os.O_PATH:
                into += found  # the caller's, with no point between
                del found[:]
                return into[-1]
            # reopen the resolved object with the wanted access mode
            return open_into(into, f"/proc/self/fd/{found[0]}", flags | os.O_CLOEXEC)
        finally:
            for fd in found:  # one at most
                os.close(fd)

    def _parent_into(self, fds: list[int], rel: str) -> tuple[int, str]:
        """(fd of the in-root parent directory, final name). An fd opened for it is
        appended to ``fds`` as it opens, for the caller's ``finally`` to close; one a
        subclass keeps for the next call (``SafeRoot``) is not."""
        return self._open_parent_into(fds, rel)

    def _open_parent_into(self, fds: list[int], rel: str) -> tuple[int, str]:
        parts = split_path(rel)
        if not parts:
            raise InvalidArgument("the operation needs a path below the root, not the root itself")
        return self._open(parts[:-1], os.O_PATH | os.O_DIRECTORY, into=fds), parts[-1]

    def _open_dir_without_symlinks(self, rel: str, into: list[int]) -> int:
        """An O_PATH fd of directory ``rel`` (appended to ``into``, as ``_openat2``) if no
        component of it is a symlink (openat2 only); ELOOP if one is."""
        flags = os.O_PATH | os.O_DIRECTORY
        resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS
        return _openat2(self.fd, rel or ".", flags, resolve=resolve, into=into)

    def open_parent(self, rel: str) -> tuple[int, str]:
        """An O_PATH fd of the directory holding ``rel`` (resolved in-root) and the final
        name, never followed: for an ``*at`` call on the entry itself. The caller closes
        the fd."""
        fds: list[int] = []
        try:
            return self._open_parent_into(fds, rel)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def open(self, rel: str, flags: int = os.O_RDONLY, *, beneath: bool = False) -> int:
        """An fd of ``rel`` with ``flags``, every symlink followed in-root, the final one
        too (``beneath``: refused, EXDEV, if one leads out). The caller closes it."""
        return self._open(split_path(rel), flags, beneath=beneath)

    def open_into(self, fds: list[int], rel: str, flags: int, *, beneath: bool = False) -> int:
        """``open``, its fd appended to ``fds`` as it opens (``util.owned_open``: with
        openat2; after the walk by hand without it)."""
        return self._open(split_path(rel), flags, beneath=beneath, into=fds)

    def open_dir(self, rel: str) -> int:
        """A readable O_DIRECTORY fd of ``rel`` resolved in-root (caller closes it)."""
        return self._open(split_path(rel), os.O_RDONLY | os.O_DIRECTORY)

    def open_path(self, rel: str, *, follow: bool = False, beneath: bool = False) -> int:
        """An O_PATH fd of ``rel``; the final symlink is followed in-root only if ``follow``.
        ``beneath``: a symlink leading out of the root is refused (EXDEV), not clamped."""
        fds: list[int] = []
        try:
            return self.open_path_into(fds, rel, follow=follow, beneath=beneath)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def open_path_into(
        self, fds: list[int], rel: str, *, follow: bool = False, beneath: bool = False
    ) -> int:
        """``open_path``, its fd appended to ``fds`` as it opens (``util.owned_open``)."""
        parts = split_path(rel)
        if follow or not parts:
            return self._open(parts, os.O_PATH, beneath=beneath, into=fds)
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            return open_into(fds, name, _PATH_NOFOLLOW, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def follow(self, rel: str, *, create_parents: bool = False, mode: int = 0o755) -> Followed:
        """Where ``rel`` leads inside the root, every symlink followed in-root (the final one
        too, dangling or not), as an absolute in-root path free of symlinks.

        The object at the end need not exist (``Followed.exists``). With ``create_parents``,
        missing directories on the way are made (``mode``) and listed in ``created``, parents
        first, so a dangling ``/app -> /data`` followed by ``/app/x`` makes ``/data``. A loop
        raises ``ELOOP`` and a non-directory in the middle ``ENOTDIR``, both naming the
        in-root path reached.
        """
        walk = _Walk()
        try:
            self._walk_into(walk, split_path(rel), False, create_parents, mode)
            if walk.last:
                exists = walk.fd is not None
                return Followed(walk.path(walk.last), exists, walk.created, is_dir=False)
            return Followed(walk.path(), True, walk.created, is_dir=True)
        finally:
            walk.close()

    def resolve(self, rel: str) -> str:
        """The absolute in-root path ``rel`` leads to (``follow(rel).path``)."""
        return self.follow(rel).path

    # -- reading --------------------------------------------------------------------

    def stat(self, rel: str, *, follow: bool = False) -> os.stat_result:
        """``lstat``, or with ``follow`` the stat of what ``rel`` resolves to in-root."""
        if not follow:
            return self.lstat(rel)
        fds: list[int] = []
        try:
            return os.fstat(self._open(split_path(rel), os.O_PATH, into=fds))
        finally:
            for fd in fds:  # one at most
                os.close(fd)

    def lstat(self, rel: str) -> os.stat_result:
        """``lstat`` of ``rel``: its parent resolved in-root, itself never followed."""
        if not split_path(rel):
            return os.fstat(self.fd)
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def exists(self, rel: str) -> bool:
        try:
            self.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def readlink(self, rel: str) -> str:
        """The target of symlink ``rel`` (its parent resolved in-root), never followed."""
        pfds: list[int] = []
        try:
            pfd, name = self._parent_into(pfds, rel)
            return os.readlink(name, dir_fd=pfd)
        finally:
            for parent_fd in pfds:
                os.close(parent_fd)

    def listdir(self, rel: str) -> list[str]:
        fds: list[int] = []
        try:
            return os.listdir(self._open(split_path(rel), os.O_RDONLY | os.O_DIRECTORY, into=fds))
        finally:
            for fd in fds:  # one at most
                os.close(fd)

    def open_regular(self, rel: str, *, follow: bool = False, beneath: bool = False) -> int:
        """A read-only fd of the regular file ``rel`` (caller closes it).

        The final symlink is never followed unless ``follow`` (then in-root, or with
        ``beneath`` refused with EXDEV if it leaves the root); a symlink, directory, FIFO or
        device raises OSError (ELOOP or EINVAL) without being opened for reading, so a
        source swapped for a symlink or a FIFO is neither followed nor waited on."""
        fds: list[int] = []
        try:
            return self.open_regular_into(fds, rel, follow=follow, beneath=beneath)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def open_regular_into(
        self, fds: list[int], rel: str, *, follow: bool = False, beneath: bool = False
    ) -> int:
        """``open_regular``, its fd appended to ``fds`` as it opens (``util.owned_open``)."""
        parts = split_path(rel)
        pfds: list[int] = []
        try:
            if follow or not parts:
                pfd = self._open(parts, os.O_PATH, beneath=beneath, into=pfds)
            else:
                pfd = self.open_path_into(pfds, rel)
            st = os.fstat(pfd)
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, "is a symbolic link", rel)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            return open_into(fds, f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            for fd in pfds:  # one at most
                os.close(fd)

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
        fds: list[int] = []  # the fd, the except's to close until the file owns it
        try:
            try:
                self.open_regular_into(fds, rel, follow=True)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                raise FileRefused(rel, "it is not a regular file") from None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        with os.fdopen(fds[0], "rb") as f:
            # a buffer of the size seen, not of the limit (Python allocates the size asked
            # for: /etc/passwd read with a 16 MiB limit, twice a RUN step, mapped 16 MiB);
            # a file that grew since is read on up to the limit
            data = f.read(min(st.st_size, limit) + 1)
            if len(data) > st.st_size:
                data += f.read(limit + 1 - len(data))
        if len(data) > limit:
            raise FileRefused(rel, f"it is larger than {limit} bytes")
        return data


__all__ = [
    "MAX_SYMLINKS",
    "FileRefused",
    "Followed",
    "InRoot",
    "OpenHow",
    "kind_of",
    "openat2_available",
    "split_path",
]
