"""Resolve paths inside a container root without ever leaving it.

Every component is opened relative to the previous directory fd with ``O_NOFOLLOW``;
symlinks are read and re-resolved by hand, absolute targets relative to the root and
``..`` clamped at the root, the way ``openat2(RESOLVE_IN_ROOT)`` does. All fds are
close-on-exec (Python's default).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass, field

MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


@dataclass
class _Walk:
    """A stack of open directory fds from the root to the current directory."""

    fds: list[int]
    names: list[str] = field(default_factory=list)

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def path(self, last: str = "") -> str:
        return "/" + "/".join([*self.names, last] if last else self.names)

    def up(self) -> None:
        if len(self.fds) > 1:
            os.close(self.fds.pop())
            self.names.pop()

    def to_root(self) -> None:
        while len(self.fds) > 1:
            self.up()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _walk(root_fd: int, path: str, *, follow_last: bool, create_dirs: list[str] | None):
    """Walk all of ``path`` (or all but its last component) inside the root.

    Returns (walk, last_name): ``last_name`` is "" when the whole path was walked into a
    directory. Missing directories are made (mode 0755) and recorded when ``create_dirs``
    is a list.
    """
    walk = _Walk([os.dup(root_fd)])
    todo = deque(split(path))
    links = 0
    try:
        while todo:
            name = todo.popleft()
            if name == "..":
                walk.up()
                continue
            is_last = not todo
            try:
                st = os.stat(name, dir_fd=walk.fd, follow_symlinks=False)
            except FileNotFoundError:
                if is_last:
                    return walk, name
                if create_dirs is None:
                    raise
                os.mkdir(name, 0o755, dir_fd=walk.fd)
                create_dirs.append(walk.path(name))
                st = os.stat(name, dir_fd=walk.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=walk.fd)
                if target.startswith("/"):
                    walk.to_root()
                todo.extendleft(reversed(split(target)))
                continue
            if is_last and not stat.S_ISDIR(st.st_mode):
                return walk, name
            if is_last and not follow_last:
                return walk, name
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", walk.path(name))
            walk.fds.append(os.open(name, _DIR_FLAGS, dir_fd=walk.fd))
            walk.names.append(name)
        return walk, ""
    except BaseException:
        walk.close()
        raise


def _walk_in(root: str, path: str, *, follow_last: bool, create_dirs: list[str] | None):
    """:func:`_walk` from the directory ``root``; the caller closes the walk."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        return _walk(root_fd, path, follow_last=follow_last, create_dirs=create_dirs)
    finally:
        os.close(root_fd)


def resolve(root: str, path: str, *, follow_last: bool = True) -> str:
    """The in-root absolute path ``path`` resolves to (symlinks followed inside the root)."""
    walk, last = _walk_in(root, path, follow_last=follow_last, create_dirs=None)
    try:
        return walk.path(last)
    finally:
        walk.close()


def lstat(root: str, path: str) -> os.stat_result:
    """``lstat`` of ``path`` inside ``root`` (its parents followed in-root, itself not)."""
    walk, last = _walk_in(root, path, follow_last=False, create_dirs=None)
    try:
        if not last:
            return os.fstat(walk.fd)
        return os.stat(last, dir_fd=walk.fd, follow_symlinks=False)
    finally:
        walk.close()


def readlink(root: str, path: str) -> str:
    """The target of the symlink ``path`` inside ``root`` (its parents followed in-root)."""
    walk, last = _walk_in(root, path, follow_last=False, create_dirs=None)
    try:
        return os.readlink(last, dir_fd=walk.fd)
    finally:
        walk.close()


def open_in_root(root: str, path: str, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` inside ``root``; the returned fd is close-on-exec."""
    walk, last = _walk_in(root, path, follow_last=True, create_dirs=None)
    try:
        if not last:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=walk.fd)
        return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=walk.fd)
    finally:
        walk.close()


def ensure(root: str, path: str, *, directory: bool) -> list[str]:
    """Make ``path`` exist inside ``root`` (as an empty dir or file) unless something is there.

    Returns the in-root paths created, parents first.
    """
    created: list[str] = []
    walk, last = _walk_in(root, path, follow_last=True, create_dirs=created)
    try:
        if not last:
            return created
        try:
            os.stat(last, dir_fd=walk.fd, follow_symlinks=False)
            return created
        except FileNotFoundError:
            pass
        if directory:
            os.mkdir(last, 0o755, dir_fd=walk.fd)
        else:
            fd = os.open(
                last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=walk.fd
            )
            os.close(fd)
        created.append(walk.path(last))
        return created
    finally:
        walk.close()


def remove_if_placeholder(root: str, path: str) -> bool:
    """Remove an in-root path if it is still an empty directory or an empty regular file."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        try:
            walk, last = _walk(root_fd, path, follow_last=False, create_dirs=None)
        except (FileNotFoundError, NotADirectoryError):
            return False
    finally:
        os.close(root_fd)
    try:
        if not last:
            return False
        try:
            st = os.stat(last, dir_fd=walk.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(last, dir_fd=walk.fd)
            except OSError:
                return False
            return True
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(last, dir_fd=walk.fd)
            return True
        return False
    finally:
        walk.close()
