"""Files that appear whole or not at all.

``AtomicFile`` creates a temp file beside the target (same directory, so the
rename is atomic), lets the caller write it, then fsyncs it, puts it in place
and fsyncs the directory: a reader, or a crash, sees the old file or the new
one, never a part of it. On failure the temp file is removed and the target is
untouched.

Where the file system has ``O_TMPFILE`` (ext4, xfs, btrfs, tmpfs) the temp file
has no name while it is written: a process killed mid-write (SIGKILL, the OOM
killer) leaves nothing behind, not even in a directory the user named. At the
end it is linked in through ``/proc/self/fd``: straight at the target's name
when there is none yet, else at a temp name renamed over the target at once.
Elsewhere (NFS, FUSE) it is a named temp file (``O_CREAT|O_EXCL|O_NOFOLLOW``),
``.kiln-NAME-RANDOM.tmp``, which a kill leaves behind: kiln never sweeps such
names outside its own state root, as it cannot know a user's directory is not
also someone else's.

It only ever replaces a regular file (or creates a new name): a directory,
device, FIFO, socket or symbolic link at the target is refused, so an atomic
write can never turn ``/dev/null`` into a regular file. Callers that write a
path the user named and want devices written through use ``kiln.util.output``.

``private=True`` is for credentials: the directory is opened with
``O_NOFOLLOW`` and a symbolic link as the file or as its directory is refused
with a clear error, so secrets never go through a link someone else planted.
The directory is held open by descriptor from the first check to the rename.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import functools
import os
import stat
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, BinaryIO

from kiln.errors import InvalidArgument, NotFound
from kiln.util.held_signals import opened, signals_held

__all__ = [
    "AtomicFile", "atomic_write", "file_kind", "fsync_all", "fsync_dir", "fsync_trees", "refuse_symlinks", "start_writeback", "syncfs", "WritebackEvery"
]  # fmt: skip

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_PROC_FD = "/proc/self/fd"

_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISREG, "regular file"),
)


def file_kind(mode: int) -> str:
    """``st_mode`` in words: "regular file", "directory", "character device", ..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "special file"


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    with opened(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) as fd:
        os.fsync(fd)


def fsync_all(fds: Sequence[int], dirs: Sequence[str] = ()) -> None:
    """fsync every descriptor in ``fds`` and every directory in ``dirs``, concurrently:
    the file system batches fsyncs that wait together into one journal commit, so a few
    blobs (or a blob and a directory) cost about one wait for the disk, not one each.
    Raises the first error any of them met, after all have finished (:func:`run_together`)."""
    jobs: list[Callable[[], None]] = [functools.partial(os.fsync, fd) for fd in fds]
    jobs += [functools.partial(fsync_dir, d) for d in dirs]
    _syscalls_together(jobs)


def _syscalls_together(jobs: Sequence[Callable[[], None]]) -> None:
    """:func:`run_together` for jobs that are bare system calls (no logging, no threading
    calls): each extra job gets a raw thread, and the caller goes on with the first job
    without waiting for the others to be scheduled, as ``Thread.start`` does (that wait
    is for a CPU and the GIL: ~1.5 ms a start at load 4, two per build step). No
    ``threading`` object is made, so none is left behind for the CLI's exit to wait on."""
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(i: int, done: Any = None) -> None:
        try:
            jobs[i]()
        except BaseException as exc:  # re-raised by the caller below
            errors[i] = exc
        finally:
            if done is not None:
                done.release()

    waits = []
    for i in range(1, len(jobs)):
        done = _thread.allocate_lock()
        done.acquire()
        _thread.start_new_thread(run, (i, done))
        waits.append(done)
    if jobs:
        run(0)
    for done in waits:
        done.acquire()
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


def run_together(jobs: Sequence[Callable[[], None]]) -> None:
    """Run ``jobs`` at the same time (the first in the calling thread) and return when all
    have finished; raises the first error any of them met. For work that mostly waits on
    the disk (fsyncs, a SQLite checkpoint at close): the waits overlap. The threads are
    short-lived (none outlives the call: a CLI exits without interpreter teardown only
    when it is the last thread)."""
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            jobs[i]()
        except BaseException as exc:  # re-raised by the caller below
            errors[i] = exc

    import threading

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(jobs))]
    for t in threads:
        t.start()
    if jobs:
        run(0)
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


#: above this many files and directories, ``fsync_trees`` syncs the whole file system once
#: instead: one syncfs costs about as much as a few hundred fsyncs on ext4
FSYNC_TREE_LIMIT = 256


def fsync_trees(paths: Sequence[str], limit: int = FSYNC_TREE_LIMIT) -> int:
    """Make everything under the directories ``paths`` (on one file system) durable: every
    regular file and directory fsynced, all waiting together (symlinks, devices and
    whiteouts are inodes whose creation the directory's fsync makes durable), or, past
    ``limit`` entries in all, one ``syncfs`` of their file system. Returns how many were
    fsynced, or -1 when the file system was synced instead (also when an entry cannot be
    opened: a mode 000 file of a rootless run, say).

    For trees written without syncs (unpacked layers, an overlay upper mounted
    ``volatile``) that must be durable before something a later reader trusts names them,
    where the boot id is unknown (else they are recorded as not yet durable instead)."""
    if not paths:
        return 0
    try:
        return _fsync_each(paths, limit)
    except OSError:
        pass
    syncfs(paths[0])
    return -1


def _fsync_each(paths: Sequence[str], limit: int) -> int:
    todo = list(paths)
    found: list[tuple[str, bool]] = [(path, True) for path in paths]
    while todo:
        with os.scandir(todo.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                    found.append((entry.path, True))
                elif entry.is_file(follow_symlinks=False):
                    found.append((entry.path, False))
                if len(found) > limit:
                    raise OSError("too many entries: one syncfs instead")
    fds: list[int] = []
    try:
        for name, is_dir in found:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if is_dir else 0)
            fds.append(os.open(name, flags))
        fsync_all(fds)  # together: about one wait for the disk
    finally:
        for fd in fds:
            os.close(fd)
    return len(found)


@functools.cache
def _sync_file_range() -> Callable[..., int] | None:
    import ctypes

    fn = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
    return fn


def start_writeback(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to disk without waiting (``sync_file_range`` with
    SYNC_FILE_RANGE_WRITE), as dpkg does before its fsyncs: the disk works while the
    caller goes on, and the fsync or syncfs that makes the file durable later finds little
    left to write. A hint only: nothing is promised and no error is raised."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE


class WritebackEvery:
    """``start_writeback(fd)`` after every ``every`` bytes ``wrote`` is told of: for a file
    written in a stream (a blob) and fsynced at its end, so that fsync finds little left."""

    def __init__(self, fd: int, every: int = 8 << 20):
        self.fd = fd
        self.every = every
        self._unsent = 0

    def wrote(self, n: int) -> None:
        self._unsent += n
        if self._unsent >= self.every:
            start_writeback(self.fd)
            self._unsent = 0


def syncfs(path: str) -> None:
    """syncfs(2): write out everything dirty on the file system holding ``path``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _link_error(what: str, path: str, directory: bool = False) -> InvalidArgument:
    if directory:
        return InvalidArgument(
            f"{what} directory {path} is a symbolic link; refusing to write {what} "
            "through it: use a real directory"
        )
    return InvalidArgument(
        f"{what} {path} is a symbolic link; refusing to write {what} through it: "
        "remove the link or give the real file"
    )


def refuse_symlinks(path: str, what: str = "file") -> None:
    """Refuse ``path`` if it or its directory is a symbolic link (checked before reading a
    file that a ``private`` AtomicFile will replace; the AtomicFile checks again)."""
    if os.path.islink(path):
        raise _link_error(what, path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.islink(directory):
        raise _link_error(what, directory, directory=True)


def _open_dir(directory: str, name: str, private: bool, what: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if private else 0)
    try:
        return os.open(directory, flags)
    except FileNotFoundError:
        raise NotFound(f"{directory}: no such directory to write {name} in") from None
    except OSError as exc:
        if private and exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise _link_error(what, directory, directory=True) from None
        if exc.errno == errno.ENOTDIR:
            raise InvalidArgument(
                f"{directory} is not a directory; cannot write {name} in it"
            ) from None
        raise InvalidArgument(f"cannot write {name} in {directory}: {exc.strerror}") from None


class AtomicFile:
    """A temp file that becomes ``path`` on ``commit()`` and vanishes on ``abort()``.

    ``mode`` is the new file's mode (exact, not masked by the umask); with
    ``keep_mode`` a replaced regular file keeps its mode and, where allowed, its
    owner. ``file`` is seekable. Used as a context manager it commits when the
    body succeeds and aborts when it raises. With ``durable=False`` nothing is
    synced: readers still see the old file or the new one, never a part, but a
    crash may leave either (or an empty file): for a cache worked out again.
    """

    done = False
    _dfd = -1
    _tmp: str | None = None

    def __init__(
        self,
        path: str,
        *,
        mode: int = 0o644,
        keep_mode: bool = False,
        private: bool = False,
        what: str = "file",
        prefix: str = ".kiln-",
        durable: bool = True,
    ):
        self.path = path
        self._durable = durable
        self.what = what
        directory, self._name = os.path.split(os.path.abspath(path))
        if not self._name or path.endswith("/"):
            raise InvalidArgument(f"{path}: give a file name, not a directory")
        self._mode, self._owner = mode, None
        self._private = private
        self._prefix = prefix
        try:
            # held: each descriptor is the object's (``abort``'s) from its open on
            with signals_held():
                self._dfd = _open_dir(directory, self._name, private, what)
            old = self._existing()
            if old is not None and keep_mode:
                self._mode, self._owner = stat.S_IMODE(old.st_mode), (old.st_uid, old.st_gid)
            with signals_held():
                self._tmp, fd = self._create_temp()
                self.file: BinaryIO = os.fdopen(fd, "w+b")
        except BaseException:
            self.abort()
            raise

    def __del__(self) -> None:
        if not self.done:  # dropped unfinished (a Ctrl-C before its ``with``): dropped whole
            self.abort()

    def _existing(self) -> os.stat_result | None:
        """The regular file now at the target (None if there is none); anything else refused."""
        try:
            st = os.lstat(self._name, dir_fd=self._dfd)
        except FileNotFoundError:
            return None
        if stat.S_ISREG(st.st_mode):
            return st
        if stat.S_ISLNK(st.st_mode) and self._private:
            raise _link_error(self.what, self.path)
        raise InvalidArgument(
            f"{self.path} is a {file_kind(st.st_mode)}; kiln only replaces regular files"
        )

    def _create_temp(self) -> tuple[str | None, int]:
        """(the temp file's name, or None while it has none; its descriptor)."""
        if _O_TMPFILE and os.path.isdir(_PROC_FD):
            try:
                return None, os.open(
                    ".", os.O_RDWR | _O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=self._dfd
                )
            except OSError:
                pass  # not on this file system (EOPNOTSUPP) or kernel (EISDIR): a named one
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(100):
            try:
                name = self._temp_name()
                return name, os.open(name, flags, 0o600, dir_fd=self._dfd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise InvalidArgument(f"cannot write {self.path}: {exc.strerror}") from None
        raise InvalidArgument(f"cannot write {self.path}: no free temporary name")

    def _temp_name(self) -> str:
        return f"{self._prefix}{self._name[:32]}-{os.urandom(6).hex()}.tmp"

    def _link_unnamed(self, fd: int) -> str | None:
        """Give the unnamed temp file ``fd`` a name: the target's when there is none (None:
        in place), else a temp name (returned, and kept in ``self._tmp`` for ``abort``) to
        rename over the target."""
        source = f"{_PROC_FD}/{fd}"
        try:
            os.link(source, self._name, dst_dir_fd=self._dfd, follow_symlinks=True)
            return None
        except FileExistsError:
            pass
        for _ in range(100):
            name = self._temp_name()
            try:
                os.link(source, name, dst_dir_fd=self._dfd, follow_symlinks=True)
            except FileExistsError:
                continue
            self._tmp = name
            return name
        raise InvalidArgument(f"cannot write {self.path}: no free temporary name")

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> None:
        """Flush and fsync the data, rename it over the target, fsync the directory."""
        if self.done:
            return
        try:
            self.file.flush()
            fd = self.file.fileno()
            if self._owner is not None and self._owner != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, *self._owner)
            os.fchmod(fd, self._mode)
            if self._durable:
                os.fsync(fd)
            self._existing()  # still a regular file (or nothing): never replace anything else
            tmp = self._tmp if self._tmp is not None else self._link_unnamed(fd)
            self.file.close()
            if tmp is not None:  # None: linked in place
                os.replace(tmp, self._name, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
        except BaseException:
            self.abort()
            raise
        self.done = True
        try:
            if self._durable:
                os.fsync(self._dfd)
        finally:
            os.close(self._dfd)

    def abort(self) -> None:
        """Drop the temp file; the target stays as it was."""
        if self.done:
            return
        self.done = True
        try:
            with contextlib.suppress(OSError):
                if hasattr(self, "file"):
                    self.file.close()
            if self._tmp is not None:  # an unnamed temp file went with its descriptor
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp, dir_fd=self._dfd)
        finally:
            if self._dfd >= 0:
                os.close(self._dfd)


def atomic_write(
    path: str,
    data: bytes,
    *,
    mode: int = 0o644,
    private: bool = False,
    what: str = "file",
    durable: bool = True,
) -> None:
    """Replace (or create) regular file ``path`` with ``data``, atomically and (unless not
    ``durable``: see ``AtomicFile``) durably."""
    with AtomicFile(path, mode=mode, private=private, what=what, durable=durable) as f:
        f.file.write(data)
