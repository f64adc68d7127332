"""Resumable, verified ingest of one blob.

Bytes go to ``ingest/<dir>/data`` while being hashed; ``commit`` checks size and
digest against the expected descriptor, fsyncs, and renames the file to
``blobs/<alg>/<hex>`` (then fsyncs that directory). Only a complete, verified
blob is ever visible. A named ref keeps its partial data when interrupted, so a
later ``ingest(ref)`` resumes at ``offset``; an anonymous one is removed. The
writer holds an flock on ``data`` for its lifetime: GC never removes an ingest
in progress, and a second writer of the same ref gets ``Conflict``.

An anonymous ingest is, where the file system can, an unnamed ``O_TMPFILE`` in
``ingest/``, linked to its blob name once verified and fsynced: no directory to make
and remove per blob (an ``rmdir`` costs milliseconds on some disks, and a build step
writes three blobs), and a kill leaves nothing behind, not even garbage for GC. Where
it cannot be, its directory ``tmp-<owner>-<uuid>`` names the process writing it
(``kiln.util.process_owner``): the next command that sweeps leftovers removes one whose
writer is dead (``remove_dead_writers``); GC and ``kiln system check --repair`` any that
nobody writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from kiln.errors import Conflict, DigestMismatch, InvalidArgument
from kiln.oci import Descriptor, Digest, Digester
from kiln.store import paths
from kiln.util.held_signals import signals_held
from kiln.util.locks import try_lock
from kiln.util.process_owner import is_alive, this_process

CHUNK = 1 << 20


class BlobPublisher(Protocol):
    """What an ingest needs of the store: where it lives, and how a verified blob enters it."""

    root: str

    def publish(
        self, ingests: list[Ingest | None], then: Callable[[], None] | None = None
    ) -> None: ...


def ingest_dir_name(ref: str) -> str:
    if not ref:
        return f"tmp-{this_process()}-{uuid.uuid4().hex}"
    return "ref-" + hashlib.sha256(ref.encode()).hexdigest()[:48]


_NO_TMPFILE: set[str] = set()  # ingest dirs whose file system refused O_TMPFILE


def _open_unnamed(directory: str) -> int:
    """An unnamed file in ``directory`` (``O_TMPFILE``), or -1 where that is not possible
    (the file system or kernel lacks it, or /proc is not there to link it by)."""
    if directory in _NO_TMPFILE or not hasattr(os, "O_TMPFILE"):
        return -1
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        return _open_unnamed(directory)
    except OSError:
        _NO_TMPFILE.add(directory)
        return -1


class Ingest:
    """One in-progress blob; use through ``Store.ingest`` as a context manager.

    Its descriptor is ``self._fd`` from the moment it is opened (the signals held: a
    Ctrl-C cannot land between), and an ingest dropped unclosed is closed (``__del__``):
    one a Ctrl-C stopped in ``__init__``, or between ``Store.ingest`` returning and the
    caller's ``with`` or ``try``, leaves no descriptor open (an unnamed file: no data)."""

    _fd = -1
    _done = False
    _unnamed = False
    dir = ""
    resumable = False

    def __init__(self, store: BlobPublisher, ref: str, expected: Descriptor | None):
        self._store = store
        self.ref = ref
        self.expected = expected
        self.resumable = bool(ref)
        if not ref:
            with signals_held():
                self._fd = _open_unnamed(os.path.join(store.root, paths.INGEST))
        self._unnamed = self._fd >= 0  # an O_TMPFILE: no directory, published by linking it
        if not self._unnamed:
            self.dir = os.path.join(store.root, paths.INGEST, ingest_dir_name(ref))
        self._data = os.path.join(self.dir, "data")
        if not self._unnamed:
            self._open_locked()
        algorithm = expected.digest.algorithm if expected else "sha256"
        self._digester = Digester(algorithm)
        self._rehash()

    def __del__(self) -> None:
        if self._fd >= 0 and not self._done:
            self.close()

    @property
    def offset(self) -> int:
        """Bytes already received for this ref (non-zero when resuming)."""
        return self._digester.size

    def digest(self) -> Digest:
        """The digest of the bytes received so far."""
        return self._digester.digest()

    def _open_locked(self) -> None:
        """``self._fd``: the data file, opened and locked (``__del__`` closes it if that
        fails; a named ref's data is kept)."""
        for _ in range(100):
            os.makedirs(self.dir, exist_ok=True)
            try:
                with signals_held():
                    self._fd = os.open(self._data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # GC removed the directory under us; try again
                continue
            if not self._lock(self._fd):
                self._close_fd()
                raise Conflict(
                    f'ingest "{self.ref}" is in progress in another process or thread; '
                    "wait for it to finish or use another ref"
                )
            try:
                same = os.stat(self._data).st_ino == os.fstat(self._fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return
            self._close_fd()  # GC removed it between our open and our lock
        raise Conflict(f'could not lock ingest "{self.ref}"')

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)

    def _lock(self, fd: int) -> bool:
        """Lock our data file. GC may hold it for a moment while it checks it: wait that out."""
        if not self.resumable:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a unique name: only GC can be holding it
            return True
        for _ in range(50):
            if try_lock(fd):
                return True
            time.sleep(0.01)
        return False

    def _rehash(self) -> None:
        size = os.fstat(self._fd).st_size
        if self.expected is not None and size > self.expected.size:
            os.ftruncate(self._fd, 0)  # more than the blob can hold: start over
            size = 0
        os.lseek(self._fd, 0, os.SEEK_SET)
        remaining = size
        while remaining:
            chunk = os.read(self._fd, min(CHUNK, remaining))
            if not chunk:
                break
            self._digester.update(chunk)
            remaining -= len(chunk)
        os.lseek(self._fd, self._digester.size, os.SEEK_SET)
        if self._digester.size != size:
            os.ftruncate(self._fd, self._digester.size)

    def write(self, chunk: bytes | memoryview) -> None:
        if self._done:
            raise InvalidArgument(f'ingest "{self.ref}" is already finished')
        if not chunk:
            return
        exp = self.expected
        if exp is not None and self.offset + len(chunk) > exp.size:
            got = self.offset + len(chunk)
            self.abort()
            raise DigestMismatch(
                f"content for {exp.digest} is larger than expected: more than {got - 1} bytes "
                f"received, descriptor says {exp.size}",
                expected=str(exp.digest),
                actual=f"size>{got - 1}",
            )
        view = memoryview(chunk)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._digester.update(chunk)

    def commit(self) -> Digest:
        """Verify, fsync and publish the blob; returns its digest. Mismatch keeps nothing."""
        digest = self.seal()
        self._store.publish([self])
        return digest

    def seal(self) -> Digest:
        """Verify the blob (mismatch keeps nothing) without publishing it; returns its digest.
        ``Store.publish`` then fsyncs and publishes several sealed ingests at once."""
        if self._done:
            raise InvalidArgument(f'ingest "{self.ref}" is already finished')
        actual = self._digester.digest()
        exp = self.expected
        if exp is not None and (actual != exp.digest or self.offset != exp.size):
            size = self.offset
            self.abort()
            raise DigestMismatch(
                f"content does not match its descriptor: expected {exp.digest} ({exp.size} bytes), "
                f"got {actual} ({size} bytes)",
                expected=str(exp.digest),
                actual=str(actual),
            )
        self.sealed = actual
        return actual

    sealed: Digest | None = None  # set by ``seal``: verified, not yet published

    @property
    def fd(self) -> int:
        return self._fd

    def temp_path(self) -> tuple[str, bool]:
        """Where the data is and whether it is an unnamed file (linked, not renamed)."""
        if self._unnamed:
            return f"/proc/self/fd/{self._fd}", True
        return self._data, False

    def published(self) -> None:
        """Called by the store once the blob is in place: the ingest is done."""
        self._finish()

    def abort(self) -> None:
        """Drop everything received, resumable or not."""
        if not self._done:
            self._finish()

    def close(self) -> None:
        """Stop writing: keep partial data of a named ref for resumption, drop anonymous."""
        if self._done:
            return
        if self.resumable:
            self._done = True
            try:
                os.utime(self._fd)
            finally:
                os.close(self._fd)
        else:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        try:
            if not self._unnamed:
                paths.remove_tree(self.dir)
        finally:
            os.close(self._fd)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale_ingests(root: str, max_age: float, dry_run: bool = False) -> tuple[int, int]:
    """Remove ingests nobody is writing: anonymous ones, and named ones idle for ``max_age``.
    Returns how many went and their bytes.

    Each is removed while GC holds its lock, so a writer resuming it at that
    moment notices (its lock is on a removed file) and starts afresh.
    """
    base = os.path.join(root, paths.INGEST)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return 0, 0
    now, removed, freed = time.time(), 0, 0
    for name in names:
        d = os.path.join(base, name)
        try:
            fd = os.open(os.path.join(d, "data"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        except OSError:
            continue
        try:
            if fd >= 0 and not try_lock(fd):
                continue
            age = now - (os.fstat(fd).st_mtime if fd >= 0 else os.stat(d).st_mtime)
            if name.startswith("ref-") and age < max_age:
                continue
            if fd < 0 and age < 60:
                continue  # a writer may be between mkdir and open
            removed += 1
            freed += os.fstat(fd).st_size if fd >= 0 else 0
            if not dry_run:
                paths.remove_tree(d)
        except FileNotFoundError:
            continue
        finally:
            if fd >= 0:
                os.close(fd)
    return removed, freed


def remove_dead_writers(root: str) -> int:
    """Remove the anonymous ingest directories (made where ``O_TMPFILE`` is not available)
    whose writer, named in the directory, is dead: a killed command's unfinished blob,
    as big as the blob. One whose writer lives, or that names none, is left alone (GC
    takes it once it is nobody's). Returns how many went."""
    base = os.path.join(root, paths.INGEST)
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    removed = 0
    for name in names:
        owner = name.removeprefix("tmp-").rpartition("-")[0] if name.startswith("tmp-") else ""
        if not owner or is_alive(owner):
            continue
        d = os.path.join(base, name)
        try:
            fd = os.open(os.path.join(d, "data"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1  # killed between mkdir and open
        except OSError:
            continue
        try:
            if fd < 0 or try_lock(fd):  # held: GC is removing it right now
                paths.remove_tree(d)
                removed += 1
        finally:
            if fd >= 0:
                os.close(fd)
    return removed
