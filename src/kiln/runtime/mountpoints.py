"""Create the mountpoints a run needs in the rootfs, and take the placeholders away again.

The runtime would otherwise create missing mountpoints itself (``/etc/hosts``, a volume's
directory, ``/proc``...) and they would end up in the committed layer. Like buildah, kiln
creates them beforehand through in-root resolution, remembers exactly what it created,
and after the run removes what is still an empty placeholder.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.util.inroot import InRoot
from kiln.util.lazy_dataclass import dataclass

from .options import RunOptions

SYSTEM_DIRS = ("/proc", "/dev", "/sys")
ETC_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")


def etc_files(opts: RunOptions) -> tuple[str, ...]:
    """The files of ``ETC_FILES`` kiln binds for this run: not /etc/hosts with ``no_hosts``
    (the container sees the image's, or none, as buildah's --no-hosts)."""
    return tuple(p for p in ETC_FILES if p != "/etc/hosts") if opts.no_hosts else ETC_FILES


@dataclass
class Placeholders:
    """What kiln created in one rootfs, in creation order."""

    rootfs: str
    created: list[str] = field(default_factory=list)
    #: directories of the image a placeholder was made in: (path, atime_ns and mtime_ns
    #: before, mtime_ns after), so that taking the placeholders away gives their times back
    touched: list[tuple[str, int, int, int]] = field(default_factory=list)

    def cleanup(self) -> list[str]:
        """Remove the placeholders that are still empty; returns what was removed. A
        directory the run left as the placeholders left it gets its times back (a
        container whose tree is its snapshot, the copy driver, keeps no trace of them)."""
        removed = []
        if self.created:
            with InRoot.opened(self.rootfs) as root:
                untouched = [t for t in self.touched if _mtime(root, t[0]) == t[3]]
                for path in reversed(self.created):
                    try:
                        if _remove_if_placeholder(root, path):
                            removed.append(path)
                    except OSError:
                        continue
                for path, atime, mtime, _ in untouched:
                    _set_times(root, path, atime, mtime)
        self.created = []
        self.touched = []
        return removed


def _mtime(root: InRoot, path: str) -> int | None:
    """The mtime of directory ``path`` (followed in-root), None if it is not one."""
    try:
        st = root.stat(path, follow=True)
    except OSError:
        return None
    return st.st_mtime_ns if stat.S_ISDIR(st.st_mode) else None


def _set_times(root: InRoot, path: str, atime_ns: int, mtime_ns: int) -> None:
    try:
        fd = root.open_path(path, follow=True)
    except OSError:
        return
    try:
        os.utime(f"/proc/self/fd/{fd}", ns=(atime_ns, mtime_ns))
    except OSError:
        pass
    finally:
        os.close(fd)


def _directories_above(paths: list[str]) -> list[str]:
    """Every directory above ``paths`` (absolute in-container paths), the root first."""
    found = {"/"}
    for path in paths:
        parts = [p for p in path.split("/") if p]
        found.update("/" + "/".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(found)


def _times_before(root: InRoot, paths: list[str]) -> list[tuple[str, int, int]]:
    out = []
    for path in _directories_above(paths):
        try:
            st = root.stat(path, follow=True)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            out.append((path, st.st_atime_ns, st.st_mtime_ns))
    return out


def _remove_if_placeholder(root: InRoot, path: str) -> bool:
    """Remove ``path`` (its parents resolved in-root, itself never followed) if it is still
    an empty directory or an empty regular file."""
    try:
        pfd, name = root.open_parent(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError:
                return False
            return True
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=pfd)
            return True
        return False
    finally:
        os.close(pfd)


def _source_is_dir(source: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(source).st_mode)
    except FileNotFoundError:
        raise InvalidArgument(
            f"mount source {source!r} does not exist: create it or fix the path"
        ) from None


def wanted(opts: RunOptions) -> list[tuple[str, bool]]:
    """(in-container path, is a directory) for every mountpoint the run uses."""
    points = [(p, True) for p in SYSTEM_DIRS]
    points += [(p, False) for p in etc_files(opts)]
    for mount in opts.mounts:
        is_dir = mount.type == "tmpfs" or _source_is_dir(mount.source)
        points.append((mount.destination, is_dir))
    return points


def check_system_dirs(root: InRoot) -> None:
    """Refuse a rootfs whose /proc, /dev or /sys is a symlink or not a directory.

    The runtime mounts its own filesystems there and, before it enters the container, makes
    entries under /dev (``fd``, ``stdin``, ``ptmx``...) and /sys/fs/cgroup through the host's
    view of the rootfs: an image's ``/dev -> /some/host/dir`` would have those made on the
    host (runc does exactly that). A missing one is fine: it is made as a placeholder.
    """
    for path in SYSTEM_DIRS:
        try:
            st = root.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            target = root.readlink(path)
            raise InvalidArgument(
                f"the image's {path} is a symbolic link (to {target}): kiln mounts its own "
                f"{path} there and will not follow a link for it; make {path} a directory in "
                "the image"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                f"the image's {path} is not a directory: kiln mounts its own {path} there; "
                f"make {path} a directory in the image"
            )


def check_etc_files(root: InRoot, opts: RunOptions) -> None:
    """Refuse an image whose /etc/hosts, /etc/resolv.conf or /etc/hostname (where kiln mounts
    its own files) is a directory or leads, in-root, into /proc, /dev or /sys (kiln's own
    mounts, which a file of the image must not shadow)."""
    overridden = {m.destination.rstrip("/") or "/" for m in opts.mounts}
    for path in etc_files(opts):
        if path in overridden:
            continue
        try:
            where = root.resolve(path)
            st = root.lstat(where)
        except FileNotFoundError:
            continue  # a placeholder is made with the other mountpoints
        except OSError:
            continue  # a loop or a file on the way: refused when the placeholder is made
        under = next((d for d in SYSTEM_DIRS if where == d or where.startswith(d + "/")), None)
        if under is not None:
            raise InvalidArgument(
                f"the image's {path} leads to {where}, inside {under}: kiln mounts its own "
                f"{under} and {path}, and will not put one over the other; fix the link in "
                "the image"
            )
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                f"the image's {path} is a directory: kiln mounts its own {path} file there; "
                "remove the directory from the image"
            )


def ensure(root: InRoot, path: str, *, directory: bool) -> list[str]:
    """Make ``path`` exist inside ``root`` (as an empty directory or file) unless something is
    there, symlinks on the way and at the end followed in-root (a dangling one gets its
    target made). Returns the in-root paths created, parents first."""
    found = root.follow(path, create_parents=True)
    if found.exists:
        return found.created
    pfd, name = root.open_parent(found.path)
    try:
        if directory:
            os.mkdir(name, 0o755, dir_fd=pfd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=pfd))
    finally:
        os.close(pfd)
    return [*found.created, found.path]


def _ensure(root: InRoot, path: str, *, directory: bool, what: str) -> list[str]:
    """:func:`ensure` with the errors a user can cause worded for them."""
    try:
        return ensure(root, path, directory=directory)
    except NotADirectoryError:
        raise InvalidArgument(
            f"{what} {path}: a parent of it is not a directory in the container"
        ) from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InvalidArgument(
            f"{what} {path}: too many levels of symbolic links (a symlink loop in the container)"
        ) from None


def prepare(opts: RunOptions, rootfs: str) -> Placeholders:
    """Create missing mountpoints (and the working directory, which is kept) in ``rootfs``.

    Every path is resolved in-root (an image's symlinks lead inside it, never to the host)."""
    placeholders = Placeholders(rootfs)
    with InRoot.opened(rootfs) as root:
        check_system_dirs(root)
        before = _times_before(root, [p for p, _ in wanted(opts)])
        try:
            _make(root, opts, placeholders)
        except BaseException:
            placeholders.touched = _touched(root, before)
            placeholders.cleanup()
            raise
        placeholders.touched = _touched(root, before)
    return placeholders


def _touched(root: InRoot, before: list[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """Those of ``before`` (path, atime_ns, mtime_ns) whose mtime changed since, with it."""
    out = []
    for path, atime, mtime in before:
        after = _mtime(root, path)
        if after is not None and after != mtime:
            out.append((path, atime, mtime, after))
    return out


def _make(root: InRoot, opts: RunOptions, placeholders: Placeholders) -> None:
    system = len(SYSTEM_DIRS) + len(etc_files(opts))
    for i, (path, is_dir) in enumerate(wanted(opts)):
        made = _ensure(root, path, directory=is_dir, what="cannot mount on")
        # a RUN --mount target's missing parents stay in the image, as buildah (and
        # BuildKit) leave them; the target itself is a placeholder
        placeholders.created += made if i < system else made[-1:]
    check_etc_files(root, opts)  # now that every link on their way leads somewhere
    cwd = opts.cwd or "/"
    _ensure(root, cwd, directory=True, what="working directory")
    if not stat.S_ISDIR(root.stat(cwd, follow=True).st_mode):
        raise InvalidArgument(f"working directory {cwd} is not a directory in the container")
