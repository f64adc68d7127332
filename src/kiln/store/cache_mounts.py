"""Persistent directories for ``RUN --mount=type=cache`` (and ``kiln run --mount type=cache``).

    <root>/cache-mounts/<name>-<hash>        one directory per cache id, kept across builds
    <root>/cache-mounts/<name>-<hash>.lock   flock: shared by ``sharing=shared`` users,
                                             exclusive for ``locked|private`` and prune

The same id names the same directory in builds and in ``kiln run``. They hold only what
RUN steps put there; nothing else references them, so ``prune_cache_mounts`` (``buildah
prune``'s job) may drop any that no RUN holds at the moment. A user takes the lock first
and asks for the directory after (``cache_mount_dir`` makes it again if a prune came
first), so a prune never takes a directory between its lookup and its use; one being made
(``<name>.new-<owner>``) goes only once its maker is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator

from kiln.store import paths
from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.process_owner import is_alive, this_process

CACHE_MOUNTS = "cache-mounts"
_SAFE = lazy_pattern(r"[^A-Za-z0-9_.-]")


def cache_mount_name(cache_id: str) -> str:
    """The directory name of cache ``cache_id``: a readable prefix and a hash of the id."""
    prefix = _SAFE().sub("_", cache_id.strip("/"))[:64]
    return f"{prefix}-{hashlib.sha256(cache_id.encode()).hexdigest()[:12]}"


def _transient(name: str) -> bool:
    return ".new-" in name or ".rm-" in name


def _abandoned(name: str) -> bool:
    """Whether transient ``name`` is nobody's: a removal's (``.rm-``, whole or half done),
    or a directory being made whose maker (``.new-PID_START``) has died."""
    if ".rm-" in name:
        return True
    owner = name.rpartition(".new-")[2]
    if "_" not in owner:  # an older kiln's ``.new-PID``: its PID alone
        return not (owner.isdigit() and os.path.exists(f"/proc/{owner}"))
    return not is_alive(owner.replace("_", ":"))


class CacheMounts:
    """The cache-mount role: ``RUN --mount=type=cache`` directories under ``root``."""

    def __init__(self, root: str):
        self.root = root

    def _cache_mounts_root(self) -> str:
        base = os.path.join(self.root, CACHE_MOUNTS)
        os.makedirs(base, mode=0o700, exist_ok=True)
        return base

    def cache_mount_dir(self, cache_id: str, *, mode: int = 0o755, uid: int = 0,
                        gid: int = 0, seed: Callable[[str], None] | None = None) -> str:  # fmt: skip
        """The directory of cache ``cache_id``; made with ``mode``/``uid``/``gid`` when new,
        and filled by ``seed(new_dir)`` before anyone can see it (``from=`` caches)."""
        path = os.path.join(self._cache_mounts_root(), cache_mount_name(cache_id))
        if not os.path.isdir(path):
            tmp = path + ".new-" + this_process().replace(":", "_")
            paths.remove_tree(tmp)
            os.mkdir(tmp, 0o700)
            if os.geteuid() == 0 or (uid, gid) != (0, 0):
                os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            if seed is not None:
                try:
                    seed(tmp)
                except BaseException:
                    paths.remove_tree(tmp)
                    raise
            try:
                os.rename(tmp, path)
            except OSError:  # made by someone else meanwhile
                paths.remove_tree(tmp)
                if not os.path.isdir(path):
                    raise
        else:  # its time is when a RUN last used it (``prune_cache_mounts(used_before=)``)
            with contextlib.suppress(OSError):
                os.utime(path)
        return path

    @contextlib.contextmanager
    def cache_mount_lock(
        self, cache_id: str, *, wait: bool = True, shared: bool = False
    ) -> Iterator[bool]:
        """Hold cache ``cache_id`` (exclusively, or ``shared`` with other users so that a
        prune leaves it alone); yields False (not held) when taken and not ``wait``."""
        path = os.path.join(self._cache_mounts_root(), cache_mount_name(cache_id) + ".lock")
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        fd = _locked(path, mode | (0 if wait else fcntl.LOCK_NB))
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)

    def list_cache_mounts(self) -> list[str]:
        """The cache mount directory names."""
        base = self._cache_mounts_root()
        return sorted(n for n in os.listdir(base)
                      if os.path.isdir(os.path.join(base, n)) and not _transient(n))  # fmt: skip

    def cache_mount_users(self) -> dict[str, bool]:
        """Each cache mount directory (its path), and whether a RUN holds it now (``system
        df``'s in-use column; a prune leaves those)."""
        base = self._cache_mounts_root()
        out = {}
        for name in self.list_cache_mounts():
            path = os.path.join(base, name)
            try:
                fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                out[path] = False
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                out[path] = False
            except BlockingIOError:
                out[path] = True
            finally:
                os.close(fd)
        return out

    def prune_cache_mounts(self, used_before: float | None = None) -> int:
        """Remove every cache mount no RUN holds locked now (with ``used_before``, epoch
        seconds: only those no RUN has used since), with its lock file (and the lock files
        of seedings: no directory bears their name); returns how many directories went."""
        base = self._cache_mounts_root()
        removed = 0
        names = os.listdir(base)
        for name in names:
            path = os.path.join(base, name)
            if _transient(name):
                if _abandoned(name):  # left by a crash
                    paths.remove_tree(path)
                continue
            if name.endswith(".lock") or not os.path.isdir(path):
                continue
            if used_before is not None and _mtime(path) >= used_before:
                continue
            fd = _locked(path + ".lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
            if fd is None:
                continue
            try:
                aside = f"{path}.rm-{os.getpid()}"
                os.rename(path, aside)
                paths.remove_tree(aside)
                os.unlink(path + ".lock")  # held: a waiter finds it gone (``_locked``)
                removed += 1
            finally:
                os.close(fd)
        for name in names:  # lock files no directory goes with: seedings', a crash's
            path = os.path.join(base, name)
            if not name.endswith(".lock") or os.path.isdir(path.removesuffix(".lock")):
                continue
            if not os.path.exists(path):  # its directory's, unlinked above
                continue
            fd = _locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                os.close(fd)
        return removed


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _locked(path: str, operation: int) -> int | None:
    """A descriptor of lock file ``path`` (made if missing) holding ``operation`` (a
    ``flock`` operation), or None when ``LOCK_NB`` is in it and someone else holds it. A
    prune unlinks a lock file while it holds it: a lock taken on a file no longer at
    ``path`` is dropped and taken again on the one there now, so two users never hold
    two different files of one cache."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, operation)
            held = os.fstat(fd)
            now = os.stat(path)
        except BlockingIOError:
            os.close(fd)
            return None
        except FileNotFoundError:  # unlinked by a prune after our open: take the next one
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return fd
        os.close(fd)
