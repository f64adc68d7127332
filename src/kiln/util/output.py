"""Writing a file the user named: ``-o``, ``--output``, ``--iidfile``, ``--digestfile``, ``dest=``.

What the path names decides how it is written (podman's behaviour, made atomic
where that is safe):

- a new path or a regular file: a temp file beside it, put in place when
  complete (``AtomicFile``): readers see the old file or the new one, a failed
  write leaves the old file (or nothing) and no temp file, nor does a killed kiln
  where the file system has ``O_TMPFILE``; a replaced file keeps its mode and owner;
- a symbolic link: followed, as podman does, and the file it leads to handled
  by these same rules (a dangling link creates its target; a loop is an error);
- a character or block device, a FIFO or a terminal: opened for writing and
  written through, never replaced (``-o /dev/null`` stays the device). Opening
  a FIFO waits for its reader, as any writer of a pipe does;
- a directory, a socket, a missing parent directory: a clear error, nothing written;
- ``-``, when the caller passes ``stdout``: that stream (flushed, never closed);
- one of this process's own descriptors by name (``/dev/stdout``, ``/dev/stderr``,
  ``/dev/fd/N``, ``/proc/self/fd/N``): written through that descriptor, as a shell
  redirection set it up (a pipe, a file at its offset); never resolved to a path and
  replaced.

A failed write to an output (a full disk, ``-o /dev/full``, an I/O error) is an error
naming that output ("writing /dev/full: no space left on device"), never one that reads as
kiln's store's: ``Output.file`` and ``output_stream`` say where. A reader that went away
(``kiln save x | head -c1``) stays a ``BrokenPipeError``, which the CLI ends quietly.

Outputs that are directories (``oci:DIR``, ``dir:DIR``, ``--format oci-dir``,
``type=local,dest=DIR``) go through ``output_dir``: made if missing, an error if the path
is anything but a directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO, cast

from kiln.errors import InvalidArgument, KilnError, NoSpace, NotFound, Unavailable, is_no_space
from kiln.util.atomic import AtomicFile, file_kind
from kiln.util.lazy_pattern import lazy_pattern

__all__ = [
    "Output", "OutputFile", "check_output", "naming", "open_output", "output_dir",
    "output_stream", "write_error", "write_output",
]  # fmt: skip

STDOUT = "standard output"


_PROC_FD = lazy_pattern(r"/proc/(\d+)(?:/task/\d+)?/fd/(\d+)")


def _own_fd(path: str) -> int | None:
    """The descriptor of this process that ``path`` names through ``/proc`` (``/dev/stdout``,
    ``/dev/fd/3``, ``/proc/self/fd/1``), else None."""
    p = path
    for _ in range(40):
        head, tail = os.path.split(os.path.abspath(p))
        try:
            p = os.path.join(os.path.realpath(head), tail)
            m = _PROC_FD().fullmatch(p)
            if m:
                return int(m[2]) if int(m[1]) == os.getpid() else None
            p = os.path.join(os.path.dirname(p), os.readlink(p))
        except OSError:  # not a link (EINVAL), gone, or not ours to read
            return None
    return None


def _check_fd(path: str, fd: int) -> None:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{path} is a directory; give a file name")


def _resolve(path: str) -> tuple[str, os.stat_result | None]:
    """(the path to write after following links, what is there now or None)."""
    if not path:
        raise InvalidArgument("an output path is empty; give a file name")
    try:
        st: os.stat_result | None = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
    target = path
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            target = os.path.realpath(path)
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as exc:
            raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(f"cannot write {path}: too many levels of symbolic links")
    shown = path if target == path else f"{path} (-> {target})"
    if st is None:
        directory = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(directory):
            what = "no such directory" if not os.path.lexists(directory) else "not a directory"
            raise NotFound(f"{directory}: {what} to write {os.path.basename(target)} in")
        if path.endswith("/"):
            raise InvalidArgument(f"{path}: give a file name, not a directory")
    elif stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{shown} is a directory; give a file name")
    elif stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"{shown} is a socket; kiln cannot write an output into it")
    return target, st


def check_output(path: str) -> None:
    """Refuse, before any work, an output path that cannot be written (see the module doc)."""
    fd = _own_fd(path)
    if fd is not None:
        _check_fd(path, fd)
        return
    _resolve(path)


def write_error(where: str, exc: OSError) -> KilnError:
    """The error of a write to output ``where`` that failed with ``exc`` (not a closed pipe)."""
    if is_no_space(exc):
        error: Unavailable = NoSpace(f"writing {where}: no space left on device")
    else:
        error = Unavailable(f"writing {where}: {exc.strerror or exc}")
    error.errno = exc.errno
    return error


@contextlib.contextmanager
def naming(where: str) -> Iterator[None]:
    """A write in the block that fails (an ``OSError`` but a closed pipe) is ``write_error``."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise write_error(where, exc) from None


class OutputFile:
    """A file or stream written as an output: the writes go through, and one that fails is
    an error naming the output (``write_error``); a closed pipe stays ``BrokenPipeError``.
    Everything else (``tell``, ``seek``, ``truncate``, ``fileno``) is the file's own."""

    def __init__(self, file: BinaryIO, where: str):
        self._file = file
        self.where = where

    def write(self, data: bytes) -> int:
        with naming(self.where):
            return self._file.write(data)

    def flush(self) -> None:
        with naming(self.where):
            self._file.flush()

    def close(self) -> None:
        with naming(self.where):
            self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def output_stream(stream: BinaryIO, where: str = STDOUT) -> BinaryIO:
    """``stream`` (standard output, by default) as an output: a failed write names it."""
    if isinstance(stream, OutputFile):
        return cast(BinaryIO, stream)
    return cast(BinaryIO, OutputFile(stream, where))


class Output:
    """An output being written: write to ``file``; ``commit()`` finishes it, ``abort()``
    drops what is not yet visible. ``atomic`` says whether ``file`` is a seekable temp
    file (a regular file target) or the target itself (device, FIFO, stream)."""

    def __init__(self, path: str, file: BinaryIO, atomic: AtomicFile | None, owned: bool):
        self.path = path
        self.file = output_stream(file, STDOUT if path == "-" and not owned else path)
        self._atomic = atomic
        self._owned = owned  # close on commit/abort (not a stream the caller passed)
        self.done = False

    @property
    def atomic(self) -> bool:
        return self._atomic is not None

    def __enter__(self) -> Output:
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
        if self.done:
            return
        self.done = True
        if self._atomic is not None:
            with naming(self.path):  # flush, fsync, rename: a full disk may show only here
                self._atomic.commit()
            return
        try:
            self.file.flush()
        finally:
            if self._owned:
                self.file.close()

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        if self._atomic is not None:
            self._atomic.abort()
        elif self._owned:
            with contextlib.suppress(OSError, KilnError):  # what it failed to flush is dropped
                self.file.close()


def open_output(path: str, *, mode: int = 0o644, stdout: BinaryIO | None = None) -> Output:
    """Open ``path`` for writing as the module doc says; ``-`` is ``stdout`` when given."""
    if path == "-" and stdout is not None:
        return Output(path, stdout, None, owned=False)
    fd = _own_fd(path)
    if fd is not None:
        _check_fd(path, fd)
        return Output(path, os.fdopen(os.dup(fd), "wb"), None, owned=True)
    target, st = _resolve(path)
    if st is None or stat.S_ISREG(st.st_mode):
        atomic = AtomicFile(target, mode=mode, keep_mode=True)
        return Output(path, atomic.file, atomic, owned=True)
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
    now = os.fstat(fd)
    if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
        os.close(fd)
        kind = file_kind(now.st_mode)
        raise InvalidArgument(f"{path} changed to a {kind} while it was opened; try again")
    return Output(path, os.fdopen(fd, "wb"), None, owned=True)


def write_output(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to the output ``path`` (see the module doc)."""
    with open_output(path, mode=mode) as out:
        out.file.write(data)


def output_dir(path: str, what: str = "this output") -> None:
    """Make sure directory output ``path`` exists (created 0755 with its parents if missing);
    anything else there (a file, a device, a FIFO) is an error, never replaced."""
    if not path:
        raise InvalidArgument("an output directory path is empty; give a directory")
    try:
        os.makedirs(path, exist_ok=True)
        return
    except FileExistsError:
        pass  # exists and is not a directory (makedirs follows links): say what it is
    except NotADirectoryError:
        raise InvalidArgument(f"{path}: a part of the path is not a directory") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot make directory {path}: {exc.strerror}") from None
    try:
        kind = file_kind(os.stat(path).st_mode)
    except OSError:
        kind = "dangling symbolic link" if os.path.islink(path) else "file"
    raise InvalidArgument(f"{path} is a {kind}; {what} needs a directory")
