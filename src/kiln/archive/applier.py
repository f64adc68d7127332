"""Apply a layer tar to a directory, safely, in one streaming pass.

The blob is decompressed (format detected, bomb-guarded), the *uncompressed*
tar stream is hashed on the way (that hash is the diff_id), ``tarfile`` only
parses headers, and every write goes through :class:`SafeRoot`, so no entry —
absolute, ``..``, through a symlink planted by an earlier entry, a hard link
outside — can touch anything outside ``target_dir``.

The applier does not roll back: on error ``target_dir`` is left half-written.
Callers get atomicity by applying into a fresh temporary directory and renaming
it into place only on success.
"""

from __future__ import annotations

import collections
import errno
import io
import os
import stat
import tarfile
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol, Self, cast

from kiln.archive.compression import CHUNK, Compression, open_decompressed
from kiln.archive.hashing import HashingReader
from kiln.archive.layer_xattrs import layer_may_set
from kiln.archive.safe_root import SafeRoot
from kiln.archive.streams import ByteReader
from kiln.errors import InvalidArgument
from kiln.util.inroot import split_path
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"
_MAX_META_SIZE = 1 << 20  # PAX headers and GNU long names, as containerd caps them
_META_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_WHITEOUT_MODES = ("overlay", "delete", "none")


@dataclass(frozen=True)
class ApplyResult:
    """What applying one layer tar read and wrote."""

    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # uncompressed bytes
    compressed_size: int  # bytes read from the input stream
    entries: int  # tar members processed
    compression: Compression = Compression.NONE  # the input stream's, given or detected


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses oversized PAX headers / GNU long names before tarfile buffers them."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        # every header block, the extended ones' next headers too, is parsed here first
        info = super().frombuf(buf, encoding, errors)
        if info.type in _META_TYPES and info.size > _MAX_META_SIZE:
            raise InvalidArgument(
                f"layer archive has a {info.size}-byte extended header (limit {_MAX_META_SIZE}); "
                "the archive is hostile or corrupt"
            )
        return info


class _StreamMembers(Protocol):
    members: list[tarfile.TarInfo]  # a TarFile's, not in its published type


def open_tar_stream(tail: _TailReader) -> tarfile.TarFile:
    """``tail`` as a tar read in one pass (``"r|"``), its oversized headers refused, names
    kept byte for byte (``surrogateescape``): how the applier and ``check_tar`` read one."""
    return tarfile.open(
        fileobj=tail,
        mode="r|",
        tarinfo=_GuardedTarInfo,
        bufsize=CHUNK,
        errors="surrogateescape",
    )


def _next_member(tf: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next member of a ``"r|"`` archive; tarfile would keep every one before it."""
    member = tf.next()
    cast(_StreamMembers, tf).members.clear()
    return member


class _TailReader(io.RawIOBase):
    """Remembers the last few chunks read so the end-of-archive block can be checked.

    With ``entry_end_ok``, a stream that stops exactly where an entry's data ends (no
    padding, no end-of-archive blocks: the docker CLI's build context for ``-f -`` or a
    Dockerfile outside the context) reads as if they were there; the applier sets
    ``entry_end`` to where the current entry's data ends. A stream that stops anywhere
    else (inside an entry's data or header) still reads as truncated.
    """

    def __init__(self, inner: ByteReader, entry_end_ok: bool = False):
        self._inner = inner
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=4)
        self.pos = 0
        self.entry_end: int | None = None if not entry_end_ok else 0
        self._trailer = b""

    def readable(self) -> bool:
        return True

    def _read_inner(self, size: int) -> bytes:
        data = self._inner.read(size)
        if data or self.entry_end is None:
            return data
        if not self._trailer and self.pos in (self.entry_end, _padded(self.entry_end)):
            self._trailer = bytes(_padded(self.pos) - self.pos + 2 * tarfile.BLOCKSIZE)
            self.entry_end = None  # once
        data, self._trailer = self._trailer[:size], self._trailer[size:]
        return data

    def read(self, size: int = -1) -> bytes:
        want = size if size and size > 0 else CHUNK
        if self._trailer:
            data, self._trailer = self._trailer[:want], self._trailer[want:]
        else:
            data = self._read_inner(want)
        if data:
            self._chunks.append((self.pos, data))
            self.pos += len(data)
        return data

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def bytes_from(self, offset: int, want: int) -> bytes | None:
        """Up to ``want`` bytes from stream ``offset`` (reading more if needed); None if gone."""
        if offset > self.pos:
            return b""
        if self._chunks and offset < self._chunks[0][0]:
            return None
        pieces = [
            chunk[max(0, offset - start) :]
            for start, chunk in self._chunks
            if start + len(chunk) > offset
        ]
        got = b"".join(pieces)
        while len(got) < want and (more := self.read(want - len(got))):
            got += more
        return got[:want]


def _padded(offset: int) -> int:
    return -(-offset // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _mtime_ns(member: tarfile.TarInfo) -> int:
    raw = member.pax_headers.get("mtime")
    if raw is not None:
        from decimal import Decimal, InvalidOperation  # start-up: ~3 ms, for pax times only

        try:
            return int(Decimal(raw) * 1_000_000_000)
        except (InvalidOperation, ValueError):
            pass
    return int(member.mtime) * 1_000_000_000


def _entry_path(name: str, what: str = "entry") -> str:
    """Normalised relative path; refuses NUL bytes and ``..`` above the root."""
    if "\x00" in name:
        raise InvalidArgument(f"layer {what} {name!r} contains a NUL byte; the archive is corrupt")
    stripped = name.lstrip("/")
    depth = 0
    for part in stripped.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise InvalidArgument(
                    f"layer {what} {name!r} points outside the layer root; "
                    "the archive is hostile or corrupt"
                )
        elif part not in ("", "."):
            depth += 1
    return "/".join(split_path(stripped))


class _Applier:
    def __init__(self, root: SafeRoot, whiteouts: str, chown: tuple[int, int] | None):
        self.root = root
        self.whiteouts = whiteouts
        self.chown = chown
        self.is_root = os.geteuid() == 0
        self.written: set[str] = set()
        self.dirs: dict[str, tuple[int, int]] = {}  # path -> (mode, mtime_ns), applied last
        self.opaque: list[str] = []

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = _entry_path(member.name)
        base = path.rpartition("/")[2]
        if self.whiteouts != "none" and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(path, base)
            return
        if not path:
            if member.isdir():
                self._metadata("", member)
            return
        parent = path.rpartition("/")[0]
        try:
            if parent:
                self.root.makedirs(parent)
            self._create(tf, member, path)
        except InvalidArgument:
            raise
        except OSError as exc:
            raise self._os_error(member, exc) from None
        self.written.add(path)
        self._metadata(path, member)

    def _os_error(self, member: tarfile.TarInfo, exc: OSError) -> InvalidArgument:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            raise exc
        return InvalidArgument(
            f"cannot apply layer entry {member.name!r}: {exc.strerror or exc}; "
            "the archive conflicts with itself or is corrupt"
        )

    def _replace_existing(self, path: str, keep_dir: bool) -> None:
        try:
            st = self.root.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISDIR(st.st_mode) and keep_dir:
            return
        self.root.remove(path)

    def _create(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        root = self.root
        if member.isreg():
            self._replace_existing(path, keep_dir=False)
            src = cast(BinaryIO, tf.extractfile(member))  # a regular member always has data
            written = root.write_file(path, src, 0o600)
            if written != member.size:
                raise InvalidArgument(f"layer entry {member.name!r} is truncated")
        elif member.isdir():
            self._replace_existing(path, keep_dir=True)
            if not root.exists(path):
                root.mkdir(path, 0o700)
        elif member.issym():
            if "\x00" in member.linkname:
                raise InvalidArgument(f"symlink {member.name!r} has a NUL byte in its target")
            self._replace_existing(path, keep_dir=False)
            root.symlink(member.linkname, path)
        elif member.islnk():
            target = _entry_path(member.linkname, "hard link target")
            if not target or not root.exists(target):
                raise InvalidArgument(
                    f"hard link {member.name!r} points to {member.linkname!r}, which is not in "
                    "the layer or the tree below it; the archive is corrupt"
                )
            if target == path:
                return
            if stat.S_ISDIR(root.lstat(target).st_mode):
                raise InvalidArgument(f"hard link {member.name!r} points to a directory")
            self._replace_existing(path, keep_dir=False)
            root.hardlink(target, path)
        elif member.ischr() or member.isblk():
            self._replace_existing(path, keep_dir=False)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            try:
                root.mknod(path, kind | 0o600, dev)
            except PermissionError:
                if self.is_root:
                    raise
                return  # unprivileged: device nodes cannot be made; skip, like rootless podman
        elif member.isfifo():
            self._replace_existing(path, keep_dir=False)
            root.mkfifo(path, 0o600)
        else:
            raise InvalidArgument(
                f"layer entry {member.name!r} has unsupported tar type {member.type!r}"
            )

    def _metadata(self, path: str, member: tarfile.TarInfo) -> None:
        root = self.root
        if not path and not member.isdir():
            return
        if member.islnk() or not root.exists(path):
            return  # a hard link shares its target's inode; or a skipped device node
        try:
            if self.chown is not None:
                root.chown(path, *self.chown)
            elif self.is_root:
                root.chown(path, member.uid, member.gid)
            self._xattrs(path, member)
            mtime = _mtime_ns(member)
            if member.isdir():  # mode and mtime last: contents may still be written
                self.dirs[path] = (member.mode, mtime)
                return
            if not member.issym():
                root.chmod(path, member.mode)
            root.utime(path, mtime, mtime)
        except OSError as exc:
            raise self._os_error(member, exc) from None

    def _xattrs(self, path: str, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            if not layer_may_set(name):
                continue
            if name.startswith(("security.", "trusted.")) and not self.is_root:
                continue
            if name.startswith("user.") and not (member.isreg() or member.isdir()):
                continue
            try:
                self.root.setxattr(path, name, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise

    def _whiteout(self, path: str, base: str) -> None:
        parent = path.rpartition("/")[0]
        if base == OPAQUE_MARKER:
            self._opaque(parent)
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if name.startswith(".wh.") or base.startswith(".wh..wh."):
            return  # aufs metadata (.wh..wh.plnk and friends): nothing to apply
        if name in ("", ".", "..") or "/" in name:
            raise InvalidArgument(f"layer has an invalid whiteout {path!r}; the archive is corrupt")
        victim = f"{parent}/{name}" if parent else name
        try:
            if self.whiteouts == "delete":
                if victim not in self.written:
                    try:
                        self.root.remove(victim)
                    except (FileNotFoundError, NotADirectoryError):
                        pass  # nothing below to delete
                return
            if parent:
                self.root.makedirs(parent)
            self.root.remove(victim)
            self.root.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0))
            self.root.chmod(victim, 0)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot apply whiteout {path!r}: {exc.strerror or exc}"
            ) from None

    def _opaque(self, parent: str) -> None:
        try:
            if parent:
                self.root.makedirs(parent)
            if self.whiteouts == "delete":
                self.opaque.append(parent)
                self._clear_lower(parent)
                return
            try:
                self.root.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y")
            except PermissionError:
                self.root.setxattr(parent, USER_OPAQUE_XATTR, b"y")  # rootless overlay (userxattr)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot mark {parent or '/'!r} opaque: {exc.strerror or exc}"
            ) from None

    def _clear_lower(self, directory: str) -> None:
        """Remove what lower layers put in ``directory``, sparing this layer's entries."""
        prefix = f"{directory}/" if directory else ""
        for name in self.root.listdir(directory):
            child = prefix + name
            if child not in self.written:
                self.root.remove(child)
            elif stat.S_ISDIR(self.root.lstat(child).st_mode):
                self._clear_lower(child)

    def finish(self) -> None:
        for directory in self.opaque:  # entries of this layer may follow the marker
            try:
                if directory and not stat.S_ISDIR(self.root.lstat(directory).st_mode):
                    continue  # replaced by a later entry of this layer: nothing below to clear
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed by a later whiteout of this layer
            self._clear_lower(directory)
        for path in sorted(self.dirs, key=lambda p: p.count("/"), reverse=True):
            mode, mtime = self.dirs[path]
            try:
                if not stat.S_ISDIR(self.root.lstat(path).st_mode):
                    continue  # replaced by a later entry
                self.root.chmod(path, mode)
                self.root.utime(path, mtime, mtime)
            except (FileNotFoundError, NotADirectoryError):
                continue


def apply_layer(
    stream: ByteReader,
    target_dir: str,
    *,
    whiteouts: str = "overlay",
    max_ratio: float | None = None,
    on_entry: Callable[[tarfile.TarInfo], None] | None = None,
    chown: tuple[int, int] | None = None,
    entry_end_ok: bool = False,
    start_writeback: bool = False,
    compression: Compression | None = None,
) -> ApplyResult:
    """Apply a (possibly compressed) layer tar to ``target_dir``.

    ``whiteouts``: "overlay" (target is one overlayfs layer dir: ``.wh.NAME``
    becomes a 0/0 char device, ``.wh..wh..opq`` sets ``trusted.overlay.opaque``),
    "delete" (target is a full tree: whiteouts delete what lower layers left),
    or "none" (whiteout names are ordinary files). ``on_entry`` sees each tar
    member before it is applied. ``entry_end_ok``: a stream ending right after an
    entry's data, without padding and end-of-archive blocks, is complete (see
    ``_TailReader``). ``start_writeback``: each file's writeback starts as it is closed
    (for a tree the caller syncs before trusting it). ``compression``: the stream's, when the
    caller knows it (``Compression.NONE`` for a tar already decompressed: never inflated
    again, whatever its first bytes look like); detected when None. Not atomic: see the
    module docstring.
    """
    if whiteouts not in _WHITEOUT_MODES:
        raise InvalidArgument(f"whiteouts must be one of {_WHITEOUT_MODES}, not {whiteouts!r}")
    # closed whatever happens: see DecompressingReader.close
    with open_decompressed(stream, compression, max_ratio=max_ratio) as reader:
        hashing = HashingReader(reader)
        tail = _TailReader(hashing, entry_end_ok)
        entries = 0
        with SafeRoot.opened(target_dir) as root:
            root.writeback = start_writeback
            root.keep_parent()
            applier = _Applier(root, whiteouts, chown)
            try:
                with open_tar_stream(tail) as tf:
                    while (member := _next_member(tf)) is not None:
                        if tail.entry_end is not None:
                            tail.entry_end = member.offset_data + (
                                member.size if member.isreg() else 0
                            )
                        entries += 1
                        if on_entry is not None:
                            on_entry(member)
                        applier.apply(tf, member)
                    _check_end(tail, tf.offset)
            except tarfile.TarError as exc:
                if str(exc) == "empty file" and tail.pos == 0:
                    pass  # a zero-byte stream is an empty layer, as Go's tar reader sees it
                elif "unexpected end" in str(exc):
                    raise InvalidArgument("layer archive is truncated; fetch it again") from None
                else:
                    raise InvalidArgument(
                        f"layer archive is malformed: {exc}; the blob is corrupt or not a tar archive"
                    ) from None
            except EOFError:
                raise InvalidArgument("layer archive is truncated; fetch it again") from None
            applier.finish()
        hashing.drain()
    return ApplyResult(
        diff_id=hashing.digest,
        size=hashing.size,
        compressed_size=reader.compressed_bytes,
        entries=entries,
        compression=reader.compression,
    )


def _check_end(tail: _TailReader, offset: int) -> None:
    """The block where tarfile stopped must be end-of-archive zeros or a clean end."""
    block = tail.bytes_from(offset, tarfile.BLOCKSIZE)
    if block is None:
        return
    if not block:
        if offset > tail.pos:
            raise InvalidArgument("layer archive is truncated (ends inside an entry)")
        return
    if len(block) < tarfile.BLOCKSIZE:
        raise InvalidArgument("layer archive is truncated (ends inside a header)")
    if block.count(0) != tarfile.BLOCKSIZE:
        raise InvalidArgument(
            f"layer archive has a bad tar header at offset {offset} (checksum or format); "
            "the blob is corrupt"
        )


def extract_tar(
    stream: ByteReader,
    target_dir: str,
    *,
    chown: tuple[int, int] | None = None,
    entry_end_ok: bool = False,
) -> ApplyResult:
    """Plain safe extraction (ADD of a local archive): whiteout names are ordinary files.

    ``chown`` forces every entry's owner (as ``ADD --chown`` does); ``entry_end_ok``
    as for :func:`apply_layer` (build contexts from the docker CLI).
    """
    return apply_layer(stream, target_dir, whiteouts="none", chown=chown, entry_end_ok=entry_end_ok)


__all__ = ["ApplyResult", "apply_layer", "extract_tar"]
