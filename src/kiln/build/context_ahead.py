"""A helper process that checks, beside a big context's walk, which of its indexed
directories kept their entries: the no-op rebuild of a big context on two cores.

An unchanged context still costs one ``lstat`` per file (200,000 files: ~0.5 s of CPU, the
system calls and the stat results Python makes of them), and its digest, one sha256 in
walk order, cannot be split. So on more than one core the walk of a context whose index
knows at least ``MIN_ENTRIES`` entries forks a helper that lists and stats the indexed
directories from the last (in walk order) backwards while the walk goes forwards; they
meet wherever their speeds put them (the helper stops at the walk's position, kept in a
word of shared memory), so a helper that gets no core costs the walk nothing but the
fork. The helper answers one byte a directory over a pipe (1: it holds exactly the
entries of its record, each with its stat key); the walk takes the stored lines of a
directory so answered without listing it, and lists one not answered yet (it never waits),
found changed or never answered (the helper failed, or was killed) as before: the helper
can save work, never change a digest. An answer holds for the record the helper compared,
not for one another build thread stored since.

The helper opens each directory as the walk does, component by component from the
context's root and never through a symbolic link; it reads directory listings and stats
only, takes no lock, writes only to its pipe and ends with ``os._exit``, never returning
into its caller's code. The walk reaps it (killed first if still at work) however the
walk ends.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import struct
from mmap import mmap
from typing import NoReturn

from kiln.build.context_index import DirIndex, DirRecord, list_dir

__all__ = ["MIN_ENTRIES", "Ahead", "check_ahead"]

#: a context whose index knows fewer entries is walked alone (its walk is too short for a
#: fork to pay: 20,000 files take ~60 ms)
MIN_ENTRIES = 20_000
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_UNCHANGED = 1
_AT = struct.Struct("q")  # the index of the directory the walk is at


class Ahead:
    """The helper's answers, read from its pipe as the walk asks for them."""

    #: tests: wait for each answer (which directories the helper answers is then no
    #: matter of timing; the helper still stops where the walk is)
    wait = False

    def __init__(self, pid: int, fd: int, given: list[tuple[str, DirRecord]], at: mmap) -> None:
        self.pid = pid
        self.fd = fd
        self.given = {rel: (i, record) for i, (rel, record) in enumerate(given)}
        self.last = len(given) - 1
        self.at = at  # the walk's position, for the helper to stop at
        self.answers = bytearray()  # the helper's, from the last directory backwards
        if not self.wait:
            os.set_blocking(fd, False)

    def unchanged(self, rel: str, record: DirRecord) -> bool:
        """Whether the helper found directory ``rel`` as ``record`` has it (False: not
        given to the helper, not answered yet, changed, or never answered)."""
        found = self.given.get(rel)
        if found is None:
            return False
        i, given = found
        _AT.pack_into(self.at, 0, i)
        if self.last - i >= len(self.answers) and self.fd >= 0:
            self._read()
        return (
            given is record
            and self.last - i < len(self.answers)
            and (self.answers[self.last - i] == _UNCHANGED)
        )

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:  # no answer yet: the walk lists it itself
                return
            if not chunk:  # the helper is done or gone: the walk lists what is left
                self._close_pipe()
                return
            self.answers += chunk
            if not self.wait:
                return

    def close(self) -> None:
        self._close_pipe()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # still at work: nothing waits for its answers
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.at.close()

    def _close_pipe(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def check_ahead(root_fd: int, index: DirIndex, top: str) -> Ahead | None:
    """A helper checking the directories the index knows at and below ``top`` (see the
    module docstring); None when they hold fewer than ``MIN_ENTRIES`` entries, when this
    process may use one core only, or when the fork fails."""
    order = _walk_order(index, top)
    if len(order) < 2 or sum(r.count() for _, r in order) < MIN_ENTRIES or _cores() < 2:
        return None
    at = mmap(-1, _AT.size)  # shared with the helper: the walk's position, the top first
    _AT.pack_into(at, 0, 0)
    r, w = os.pipe()  # both ends close-on-exec: a RUN started meanwhile holds neither
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        at.close()
        return None
    if pid == 0:
        _helper(root_fd, order, at, w)
    os.close(w)
    return Ahead(pid, r, order, at)


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _walk_order(index: DirIndex, top: str) -> list[tuple[str, DirRecord]]:
    """The directories the index knows at and below ``top`` with their records, in walk
    order (parents first, sorted by name at each level), as far as the records reach."""
    order = []
    stack = [top]
    while stack:
        rel = stack.pop()
        record = index.records.get(rel)
        if record is None:
            continue
        order.append((rel, record))
        if record.dirs:
            names = record.entry_names()
            below = [f"{rel}/{names[i]}" if rel else names[i] for i in record.dir_indexes()]
            stack.extend(reversed(below))
    return order


def _helper(root_fd: int, given: list[tuple[str, DirRecord]], at: mmap, out: int) -> NoReturn:
    """The forked helper's whole life: an answer per directory from the last backwards,
    until the walk's position, then ``os._exit``."""
    try:
        gc.disable()  # no finalizer of the parent's objects runs here
        for i in range(len(given) - 1, -1, -1):
            if i <= _AT.unpack_from(at, 0)[0]:
                break  # the walk has been there
            rel, record = given[i]
            os.write(out, bytes((_UNCHANGED if _same(root_fd, rel, record) else 0,)))
    finally:
        os._exit(0)  # whatever happened: the walk lists what was not answered


def _same(root_fd: int, rel: str, record: DirRecord) -> bool:
    try:
        fd = _open_nofollow(root_fd, rel)
    except OSError:
        return False
    try:
        return record.matches(list_dir(fd, record))
    except OSError:
        return False
    finally:
        os.close(fd)


def _open_nofollow(root_fd: int, rel: str) -> int:
    """``rel`` opened from the context's root one component at a time, no symbolic link
    followed (a name the walk could not have met is refused)."""
    fd = os.open(".", _DIR, dir_fd=root_fd)
    for name in rel.split("/") if rel else ():
        try:
            if name in ("", ".", ".."):
                raise NotADirectoryError(name)
            child = os.open(name, _DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd
