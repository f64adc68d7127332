"""Copying files from a source tree into a rootfs with Docker's COPY rules.

The source side is walked with directory fds (its top path resolved in-root, nothing below
followed); every write on the destination side goes through ``SafeRoot``. Owners are 0:0
unless ``--chown`` (or the source's own with ``keep_owner``, which COPY --from uses, as buildah
and BuildKit do; a top directory the copy creates stays 0:0); modes are the source's unless
``--chmod``, except that a destination directory the copy creates is 0755 (buildah's rule);
mtimes are kept; hard links
inside one copy stay hard links. The extended attributes a layer carries (``user.*`` and
``security.capability``: a ``setcap`` binary keeps its file capabilities) are kept on files
and on directories below the top, as buildah 1.28 keeps them; a caller that may not set
one (``security.*`` rootless, a file system without ``user.*``) goes on without it. Each copy also yields a digest of what it copied (names,
types, modes, contents), which the build cache keys on.

File contents are read, hashed and written in one pass; when the caller already knows a
file's digest (``known_digest``: the build context's stat-keyed checksums, looked up by the
stat of the file actually opened) the bytes are copied in the kernel instead
(``copy_file_range``, else ``sendfile``) and not hashed again. The entries of a directory
are created through one in-root fd of the destination directory, by final name with
``O_NOFOLLOW``/``O_EXCL``, not by resolving each path from the root again.

Symlinks of the image, as buildah 1.28: the destination and its parents are followed in-root
(``/app -> /data`` then ``COPY f /app/`` writes ``/data/f``; a dangling link's target is made),
never replaced; entries *inside* a copied tree replace whatever non-directory is in their
place, a symlink to a directory included (BuildKit refuses there instead).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Container
from dataclasses import field
from typing import Any

from kiln.archive.changes import read_xattrs
from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument
from kiln.util.inroot import Followed
from kiln.util.lazy_dataclass import dataclass
from kiln.util.owned_open import open_into

from .chmod import Chmod

CHUNK = 1 << 20
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: (stat of an opened source file, its path as the copy names it) -> its sha256 hex digest
#: if known for exactly that stat
KnownDigest = Callable[[os.stat_result, str], "str | None"]


@dataclass
class CopyOptions:
    """How COPY/ADD sets the owner and mode of what it copies."""

    owner: tuple[int, int] | None = None  # --chown (None -> 0:0)
    chmod: Chmod | None = None  # --chmod, octal or symbolic (None -> the source's mode)
    keep_owner: bool = False  # without --chown: the source's uid/gid instead of 0:0

    def mode_for(self, mode: int, is_dir: bool = False) -> int:
        """The permission bits of a copied entry whose own are ``mode``."""
        mode &= 0o7777
        return self.chmod.apply(mode, is_dir) if self.chmod is not None else mode

    @property
    def uid_gid(self) -> tuple[int, int]:
        """The owner of what the copy creates itself (parents, a new top directory)."""
        return self.owner if self.owner is not None else (0, 0)

    def owner_of(self, st: os.stat_result) -> tuple[int, int]:
        """The owner of a copied entry whose source is ``st``."""
        if self.owner is None and self.keep_owner:
            return st.st_uid, st.st_gid
        return self.uid_gid

    #: the caller's effective uid, read once per copy (not once per file)
    euid: int = field(default_factory=os.geteuid, repr=False, compare=False)

    @property
    def chown_needed(self) -> bool:
        """Unprivileged callers without --chown keep their own ownership (rootless tests)."""
        return self.owner is not None or self.euid == 0


@dataclass
class ContentHash:
    """The digest of one COPY/ADD: sha256 of one line per entry copied (hashed as they
    come, so memory does not grow with the number of files)."""

    _hash: Any = field(default_factory=hashlib.sha256)

    def add(
        self, name: str, kind: str, mode: int, payload: str, xattrs: dict[str, bytes] | None = None
    ) -> None:
        if xattrs:  # only then: the digest of an entry without any stays what it was
            payload += "".join(f"\0{k}={v.hex()}" for k, v in sorted(xattrs.items()))
        self._hash.update(f"{name}\0{kind}\0{mode & 0o7777:o}\0{payload}\n".encode())

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def ensure_parents(dst: SafeRoot, path: str, opts: CopyOptions) -> str:
    """Create the missing directories of ``path`` (the final component excluded) as 0755;
    returns the in-root directory they lead to (symlinks on the way followed in-root)."""
    parts = [p for p in path.split("/") if p]
    return ensure_dir(dst, "/" + "/".join(parts[:-1]), opts)


def ensure_dir(dst: SafeRoot, path: str, opts: CopyOptions, what: str = "copy to") -> str:
    """Make directory ``path`` and its missing parents (owned as the copy), following
    symlinks in-root as buildah and Docker do: ``/app -> /data`` makes ``/data``, and a
    symlink is never replaced by a directory. Returns the in-root directory ``path`` leads
    to; ``what`` words the error (``cannot <what> <path>: ...``)."""
    return make_dirs(dst, path, opts, what).path


def make_dirs(dst: SafeRoot, path: str, opts: CopyOptions, what: str = "copy to") -> Followed:
    """:func:`ensure_dir`, also telling what was created."""
    try:
        found = dst.makedirs_following(path, 0o755)
    except NotADirectoryError as exc:
        at = exc.filename or path
        raise InvalidArgument(
            f"cannot {what} {path}: {at} exists in the container and is not a directory"
        ) from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InvalidArgument(
            f"cannot {what} {path}: too many levels of symbolic links (a symlink loop "
            f"in the container at {exc.filename or path})"
        ) from None
    own_made(dst, found.created, opts)
    return found


def own_made(dst: SafeRoot, paths: list[str], opts: CopyOptions) -> None:
    """Directories a copy made on the way: 0755, owned as the copy."""
    for made in paths:
        if opts.chown_needed:
            dst.chown(made, *opts.uid_gid)
        dst.chmod(made, 0o755)


def _open_same(
    fds: list[int], name: str, flags: int, dfd: int, st: os.stat_result, label: str
) -> tuple[int, os.stat_result]:
    """Open ``name`` (never following it, never waiting on a FIFO) into ``fds``, which the
    caller closes (``util.owned_open``), and check it is still the entry listed as ``st``:
    a source swapped meanwhile (for a symlink out of the tree, a FIFO, another file) is
    refused, not followed. Returns the fd and its ``fstat``."""
    try:
        fd = open_into(fds, name, flags, dir_fd=dfd)
    except OSError as exc:
        raise _changed(label) from exc
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != (
        st.st_dev,
        st.st_ino,
        stat.S_IFMT(st.st_mode),
    ):
        raise _changed(label)
    return fd, now


def _changed(label: str) -> InvalidArgument:
    return InvalidArgument(
        f"copy source {label} changed while it was being copied: try again once it is stable"
    )


def set_xattrs(target: int | str, xattrs: dict[str, bytes], label: str) -> None:
    """Set ``xattrs`` on ``target`` (an fd, or a ``/proc/self/fd`` path; ``label`` names it
    in a warning); those the file
    system or the caller may not set are left out (``security.capability`` needs
    CAP_SETFCAP: a rootless copy loses it, as buildah's does)."""
    for name, value in xattrs.items():
        try:
            os.setxattr(target, name, value)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise
            _log().warning("%s: extended attribute %s not kept (%s)", label, name, exc.strerror)


def _log() -> logging.Logger:
    return logging.getLogger("kiln.copy")


def copy_bytes(src: int, dst: int, size: int, kernel: list[bool]) -> int:
    """Copy ``size`` bytes from fd ``src`` (at its offset 0) to fd ``dst`` in the kernel:
    ``copy_file_range`` (a reflink where the file system shares extents), else ``sendfile``;
    ``kernel[0]`` remembers that copy_file_range is refused between these file systems.
    Returns the bytes copied (fewer if the source shrank)."""
    done = 0
    while done < size:
        n = 0
        if kernel[0]:
            try:
                n = os.copy_file_range(src, dst, size - done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                kernel[0] = False
                continue
        else:
            n = os.sendfile(dst, src, None, size - done)
        if not n:
            break
        done += n
    return done


def list_source_dir(dfd: int, label: str, include: Container[str] | None) -> list[tuple[str, bool]]:
    """The entries a copy takes from source directory ``dfd`` (``label``: its path as the
    copy names it, "." or "./..." below a context root), in the order it copies them:
    (name, listed as a regular file by d_type: no ``stat``), sorted by name, only those in
    ``include`` (context paths) when given. The one listing both the copier and the direct
    layer planner (``kiln.build.copy_direct``) walk, so that they cannot drift apart."""
    with os.scandir(dfd) as it:
        names = sorted((e.name, e.is_file(follow_symlinks=False)) for e in it)
    if include is not None:
        base = "" if label == "." else label.removeprefix("./")
        prefix = base + "/" if base else ""
        names = [n for n in names if prefix + n[0] in include]
    return names


class TreeCopier:
    """Copies one source item (file, directory, link, device) into the destination root."""

    def __init__(
        self,
        dst: SafeRoot,
        opts: CopyOptions,
        digest: ContentHash,
        known_digest: KnownDigest | None = None,
        include: Container[str] | None = None,
    ):
        self.dst = dst
        #: the source paths that may be copied (the top's own path and below), else all
        self.include = include
        self.opts = opts
        self.hash = digest
        self.known_digest = known_digest
        self.links: dict[tuple[int, int], str] = {}
        self._kernel_copy = [True]
        self._buf: bytearray | None = None

    def copy_top(self, src: SafeRoot, rel: str, target: str, label: str) -> None:
        """Copy source ``rel`` (followed in-root) to ``target``; a directory copies its contents."""
        pfds: list[int] = []  # each list closed by its ``finally`` even if a Ctrl-C lands
        try:  # as it opens (``util.owned_open``)
            pfd = src.open_path_into(pfds, rel, follow=True)
            st = os.fstat(pfd)
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                fds: list[int] = []
                try:
                    flags = os.O_RDONLY | os.O_CLOEXEC
                    if stat.S_ISDIR(st.st_mode):
                        dfd = open_into(fds, f"/proc/self/fd/{pfd}", flags | os.O_DIRECTORY)
                        self._dir(dfd, st, target, label, top=True)
                    else:
                        ffd = open_into(fds, f"/proc/self/fd/{pfd}", flags)
                        self._file(ffd, st, target, label)
                finally:
                    for fd in fds:
                        os.close(fd)
            else:
                self._special(st, target, label, link_target=None)
        finally:
            for fd in pfds:
                os.close(fd)

    # -- entries -----------------------------------------------------------------------

    def _dir(self, dfd: int, st: os.stat_result, target: str, label: str, top: bool) -> None:
        existed = self._existing_dir(target)
        if not existed:
            self.dst.mkdir(target, 0o700)
        xattrs = {} if top else read_xattrs(dfd, overlay=True)
        self.hash.add(label, "dir", self._mode(st), "", xattrs)
        names = list_source_dir(dfd, label, self.include)
        tfds: list[int] = []  # closed even if a Ctrl-C lands as it opens (``owned_open``)
        try:
            tfd = self.dst.open_into(tfds, target, os.O_RDONLY | os.O_DIRECTORY) if names else -1
            for name, regular in names:
                copy = self._listed_file if regular else self._child
                copy(dfd, name, posixpath.join(target, name), posixpath.join(label, name), tfd)
        finally:
            for fd in tfds:
                os.close(fd)
        if not top:
            self._meta(target, st)
            if xattrs:
                self._dir_xattrs(target, xattrs, label)
        elif not existed:
            self._made_top(target, st)

    def _child(self, dfd: int, name: str, target: str, label: str, tfd: int = -1) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise _changed(label) from None
        if stat.S_ISDIR(st.st_mode):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            fds: list[int] = []
            try:
                cfd, _ = _open_same(fds, name, flags, dfd, st, label)
                self._dir(cfd, st, target, label, top=False)
            finally:
                for fd in fds:
                    os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fds = []
            try:
                ffd, opened = _open_same(fds, name, flags, dfd, st, label)
                self._file(ffd, st, target, label, tfd, opened)
            finally:
                for fd in fds:
                    os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            try:
                link_target = os.readlink(name, dir_fd=dfd)
            except OSError as exc:  # gone, or no longer a link
                raise _changed(label) from exc
            self._special(st, target, label, link_target=link_target)
        else:
            self._special(st, target, label, link_target=None)

    def _listed_file(self, dfd: int, name: str, target: str, label: str, tfd: int) -> None:
        """A child listed as a regular file: opened by name without a ``stat`` first (never
        followed, never waiting on a FIFO); anything else there by now (a symlink, a FIFO,
        a directory) is refused as a changed source, as :func:`_open_same` refuses it."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fds: list[int] = []  # closed even if a Ctrl-C lands as it opens (``owned_open``)
        try:
            try:
                ffd = open_into(fds, name, flags, dir_fd=dfd)
            except OSError as exc:
                raise _changed(label) from exc
            st = os.fstat(ffd)
            if not stat.S_ISREG(st.st_mode):
                raise _changed(label)
            self._file(ffd, st, target, label, tfd, st)
        finally:
            for fd in fds:
                os.close(fd)

    def _file(
        self,
        ffd: int,
        st: os.stat_result,
        target: str,
        label: str,
        tfd: int = -1,
        opened: os.stat_result | None = None,
    ) -> None:
        """Copy regular file ``ffd`` to ``target`` (created in directory ``tfd`` by its final
        name when given, else resolved in-root from the destination's root). ``opened``:
        the ``fstat`` of ``ffd`` if already taken."""
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            self._replace_dir(target)
            self.dst.hardlink(self.links[key], target)
            self.hash.add(label, "link", 0, self.links[key])
            return
        outs: list[int] = []  # closed even if a Ctrl-C lands as it opens (``owned_open``)
        try:
            if tfd >= 0:
                out = self._create_at(outs, tfd, posixpath.basename(target), target)
            else:
                self._replace_dir(target)
                out = self.dst.open_file_for_write_into(outs, target, 0o600)
            digest = self._content(ffd, out, label, opened)
            xattrs = read_xattrs(ffd, overlay=True)
            if self.opts.chown_needed:
                os.fchown(out, *self.opts.owner_of(st))
            if xattrs:  # after the chown, which drops security.capability
                set_xattrs(out, xattrs, label)
            os.fchmod(out, self._mode(st))
            os.utime(out, ns=(st.st_mtime_ns, st.st_mtime_ns))
        except BaseException:
            if outs:  # made here: not left half-written
                self._discard(outs[0], tfd, target)
            raise
        finally:
            for fd in outs:
                os.close(fd)
        self.hash.add(label, "file", self._mode(st), digest, xattrs)
        if st.st_nlink > 1:
            self.links[key] = target

    def _discard(self, out: int, tfd: int, target: str) -> None:
        """Drop a file whose copy failed (a full disk, a changed source, ^C): no half-written
        file stays in the container, and the space it took is given back."""
        with contextlib.suppress(OSError):
            os.ftruncate(out, 0)  # frees the space even if the name cannot be removed
        with contextlib.suppress(OSError):
            if tfd >= 0:
                os.unlink(posixpath.basename(target), dir_fd=tfd)
            else:
                self.dst.remove(target)

    def _content(self, ffd: int, out: int, label: str, before: os.stat_result | None) -> str:
        """Copy the bytes of ``ffd`` (whose ``fstat`` is ``before``, if taken) to ``out``;
        returns their sha256 hex digest."""
        if before is None:
            before = os.fstat(ffd)
        known = self.known_digest(before, label) if self.known_digest is not None else None
        if known is not None:
            copied = copy_bytes(ffd, out, before.st_size, self._kernel_copy)
            after = os.fstat(ffd)
            if copied != before.st_size or after.st_ctime_ns != before.st_ctime_ns:
                raise _changed(label)  # not the bytes the known digest is of
            return known
        h = hashlib.sha256()
        if self._buf is None:
            self._buf = bytearray(CHUNK)
        buf = self._buf
        view = memoryview(buf)
        while n := os.readv(ffd, [buf]):
            h.update(view[:n])
            part = view[:n]
            while part:
                part = part[os.write(out, part) :]
        return h.hexdigest()

    def _create_at(self, fds: list[int], tfd: int, name: str, target: str) -> int:
        """A new file ``name`` in directory ``tfd`` (mode 0600 until its metadata is set),
        appended to ``fds`` as it opens: a non-directory already there is replaced, a
        directory refused (as ``_replace_dir``); the name is never followed."""
        try:
            return open_into(fds, name, _NEW_FILE, 0o600, dir_fd=tfd)  # the common case
        except FileExistsError:
            pass
        try:
            st = os.stat(name, dir_fd=tfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                self._replace_dir(target)  # raises: a file cannot replace a directory
            os.unlink(name, dir_fd=tfd)
        return open_into(fds, name, _NEW_FILE, 0o600, dir_fd=tfd)

    def _special(
        self, st: os.stat_result, target: str, label: str, link_target: str | None
    ) -> None:
        mode = st.st_mode
        self._replace_dir(target)
        if link_target is not None:
            self.dst.symlink(link_target, target)
            self.hash.add(label, "symlink", 0o777, link_target)
        elif stat.S_ISFIFO(mode):
            self.dst.mkfifo(target, 0o600)
            self.hash.add(label, "fifo", self._mode(st), "")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.dst.mknod(target, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            self.hash.add(
                label, "dev", self._mode(st), f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            )
        else:
            return  # sockets and unknown types are not copied, as Docker
        self._meta(target, st)

    # -- helpers -----------------------------------------------------------------------

    def _mode(self, st: os.stat_result) -> int:
        return self.opts.mode_for(st.st_mode, stat.S_ISDIR(st.st_mode))

    def _existing_dir(self, target: str) -> bool:
        """Whether ``target`` is a directory to copy into; anything else there (a symlink
        too, even to a directory) is removed to make room, as buildah does for the entries
        of a copied tree (the destination itself was followed in-root before)."""
        try:
            st = self.dst.lstat(target)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            return True
        self.dst.remove(target)
        return False

    def _replace_dir(self, target: str) -> None:
        """A non-directory replaces an existing directory only if that one is empty-able."""
        try:
            st = self.dst.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                f"cannot copy a file onto {target}: it is a directory in the container "
                "(end the destination with / to copy into it)"
            )

    def _made_top(self, target: str, st: os.stat_result) -> None:
        """A destination directory the copy creates is 0755 and owned as the copy, whatever
        the source directory's mode or ``--chmod`` (as buildah: they apply to what is inside)."""
        if self.opts.chown_needed:
            self.dst.chown(target, *self.opts.uid_gid)
        self.dst.chmod(target, 0o755)
        self._utime(target, st)

    def _dir_xattrs(self, target: str, xattrs: dict[str, bytes], label: str) -> None:
        fd = self.dst.open_path(target)
        try:
            set_xattrs(f"/proc/self/fd/{fd}", xattrs, label)  # an O_PATH fd: through its /proc name
        finally:
            os.close(fd)

    def _meta(self, target: str, st: os.stat_result) -> None:
        is_link = stat.S_ISLNK(st.st_mode)
        if self.opts.chown_needed:
            self.dst.chown(target, *self.opts.owner_of(st))
        if not is_link:
            self.dst.chmod(target, self._mode(st))
        self._utime(target, st)

    def _utime(self, target: str, st: os.stat_result) -> None:
        try:
            self.dst.utime(target, st.st_mtime_ns, st.st_mtime_ns)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                raise
