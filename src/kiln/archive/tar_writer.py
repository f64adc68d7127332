"""Deterministic layer tars, hashed and compressed in one streaming pass.

Pipeline: tar bytes -> sha256 (diff_id) -> compressor -> sha256 (digest) -> out.
Headers are PAX format with empty user/group names, whole-second mtimes
(all forced to ``timestamp`` when given, as ``buildah --timestamp`` does), and
the archive ends with two zero blocks and no record padding. The compressor is
fed fixed 1 MiB slices of the tar stream, so its output depends only on the
tar bytes (gzip stores a slice that would not shrink: ``archive.gzip_slices``);
it runs on a worker thread (``archive.pipeline``) while the next slices are
read and hashed. File content is streamed in 1 MiB chunks; memory
stays flat.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from kiln.archive.compression import CHUNK, Compression
from kiln.archive.entry import TarEntry, clean_path, sorted_entries, tar_mtime, tar_name
from kiln.archive.gzip_slices import slice_compressor
from kiln.archive.hashing import HashingSink, HashingWriter
from kiln.archive.pipeline import SlicePipeline
from kiln.archive.scan import scan_changes, scan_overlay_upper, scan_tree
from kiln.archive.streams import ByteWriter
from kiln.archive.tar_header import (
    BLKTYPE,
    BLOCKSIZE,
    CHRTYPE,
    DIRTYPE,
    FIFOTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    ustar_header,
)
from kiln.errors import Conflict, InvalidArgument, KilnError
from kiln.util.lazy_dataclass import dataclass
from kiln.util.owned_open import open_into

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_TAR_TYPES = {
    "file": REGTYPE,
    "dir": DIRTYPE,
    "symlink": SYMTYPE,
    "hardlink": LNKTYPE,
    "char": CHRTYPE,
    "block": BLKTYPE,
    "fifo": FIFOTYPE,
    "whiteout": REGTYPE,
    "opaque": REGTYPE,
}
_ZERO_BLOCKS = bytes(2 * BLOCKSIZE)
_SMALL = 64 << 10  # files up to this size go to the sink in one write with their header
#: writes shorter than this are gathered and handed on together (fewer hash and pipeline
#: calls for thousands of small files); the tar bytes, and so every digest, are the same
_BATCH = 64 << 10
#: ``write_layer``'s ``on_content``: told (entry, its file's stat as read, sha256 hex of its
#: content) for every regular file whose bytes the layer holds
ContentSeen = Callable[[TarEntry, os.stat_result, str], None]


@dataclass(frozen=True)
class LayerResult:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the bytes written to ``out``
    size: int  # compressed bytes written
    uncompressed_size: int
    compression: Compression


class _Piped:
    """The compressor's output handed to a second worker, which hashes and writes the blob:
    on a large layer the compressor's thread no longer also hashes what it produced."""

    def __init__(self, pipe: SlicePipeline):
        self.pipe = pipe

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self.pipe.write(view)
        return len(view)

    def flush(self) -> None:
        pass  # the pipeline is closed (drained) by _TarSink.close


class _TarSink:
    """Hashes the tar stream and feeds the compressor in fixed-size slices, on a worker
    thread (``SlicePipeline``), whose output goes in slices to another worker that hashes
    and writes the blob: reading and hashing the tar, compressing, and hashing and writing
    the blob overlap (the bytes, and so every digest, are those of a serial writer)."""

    def __init__(self, out: ByteWriter, compression: Compression, level: int | None):
        # a sink that hashes what it is given (a store ingest) is not hashed twice
        self.blob = out if isinstance(out, HashingSink) else HashingWriter(out)
        # smaller slices here: hashing and writing take any size, and memory stays flat.
        # (Handing the compressor's outputs over without this copy saved ~0.2 s of user
        # time a GiB and cost as much system time: each output's pages, kept a while, were
        # new pages to fault in, where a copied one is freed at once and its memory reused.)
        self._blob_pipe = SlicePipeline(self.blob.write, CHUNK // 4)
        self.compressor = slice_compressor(_Piped(self._blob_pipe), compression, level)
        self.diff = hashlib.sha256()
        self.size = 0
        self._pipe = SlicePipeline(self.compressor.write, CHUNK)
        self._pending = bytearray()

    def write(self, data: ReadableBuffer) -> None:
        view = memoryview(data).cast("B")
        if len(view) < _BATCH:  # small files' headers and contents: gathered, hashed at once
            self._pending += view
            if len(self._pending) >= _BATCH:
                self._flush()
            return
        self._flush()
        self._put(view)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, bytearray()
            self._put(memoryview(pending))

    def _put(self, view: memoryview) -> None:
        self.diff.update(view)
        self.size += len(view)
        self._pipe.write(view)

    def read_from(self, fd: int, count: int, content: hashlib._Hash | None) -> int:
        """Read up to ``count`` bytes of ``fd`` straight into the compressor's next slice
        (no copy), hashed as written; the bytes read (0 at the end of the file)."""
        self._flush()
        space = self._pipe.space(min(count, CHUNK))
        n = os.readv(fd, [space])
        if n:
            view = space[:n]
            if content is not None:
                content.update(view)
            self.diff.update(view)
            self.size += n
            self._pipe.advance(n)
        return n

    def close(self) -> None:
        try:
            self._flush()
            self._pipe.close()
            self.compressor.close()
        except BaseException:
            self._blob_pipe.abort()
            raise
        self._blob_pipe.close()
        flush = getattr(self.blob, "flush", None)
        if flush is not None:
            flush()

    def abort(self) -> None:
        self._pipe.abort()
        self._blob_pipe.abort()


def _header(entry: TarEntry, timestamp: int | None, size: int, linkname: str) -> bytes:
    name = tar_name(entry)
    kind = _TAR_TYPES[entry.type]
    mtime = tar_mtime(entry, timestamp)
    if not entry.xattrs:
        fast = ustar_header(name, kind, entry.mode, entry.uid, entry.gid, size, mtime, linkname,
                            entry.devmajor, entry.devminor)  # fmt: skip
        if fast is not None:
            return fast
    import tarfile  # start-up: only an entry that needs an extended header

    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.size = size
    info.linkname = linkname
    if entry.type in ("char", "block"):
        info.devmajor, info.devminor = entry.devmajor, entry.devminor
    info.pax_headers = {
        f"SCHILY.xattr.{name}": entry.xattrs[name].decode("utf-8", "surrogateescape")
        for name in sorted(entry.xattrs)
    }
    try:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    except ValueError as exc:
        raise InvalidArgument(f"cannot write tar entry {entry.path!r}: {exc}") from None


def _copy_content(sink: _TarSink, entry: TarEntry, fd: int, content: hashlib._Hash | None) -> None:
    remaining = entry.size
    while remaining:
        n = sink.read_from(fd, remaining, content)
        if not n:
            raise _shrank(entry)
        remaining -= n
    pad = -entry.size % BLOCKSIZE
    if pad:
        sink.write(bytes(pad))


def _write_file(
    sink: _TarSink,
    entry: TarEntry,
    timestamp: int | None,
    links: dict[tuple[int, int], str],
    on_content: ContentSeen | None,
) -> None:
    if entry.source is None:
        if entry.size:
            raise InvalidArgument(f"tar entry {entry.path!r} has a size but no source file")
        sink.write(_header(entry, timestamp, 0, ""))
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    if entry.expect is not None:
        flags |= os.O_NONBLOCK  # a FIFO put in its place must not block the build
    fds: list[int] = []  # the file's descriptor, closed even if a Ctrl-C lands as it opens
    try:
        try:
            fd = open_into(fds, entry.source, flags)
        except OSError as exc:
            if entry.expect is not None:
                raise _changed(entry) from None
            raise InvalidArgument(f"cannot read {entry.source}: {exc.strerror}") from None
        st = os.fstat(fd)
        if entry.expect is not None and _identity(st) != entry.expect:
            raise _changed(entry)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{entry.source} is not a regular file")
        if st.st_nlink > 1:
            first = links.setdefault((st.st_dev, st.st_ino), clean_path(entry.path))
            if first != clean_path(entry.path):
                sink.write(_header(entry_as_link(entry, first), timestamp, 0, first))
                return
        header = _header(entry, timestamp, entry.size, "")
        if entry.size > _SMALL:
            sink.write(header)
            content = hashlib.sha256() if on_content is not None else None
            _copy_content(sink, entry, fd, content)
            _check_unchanged(entry, fd)
            if content is not None and on_content is not None:
                on_content(entry, st, content.hexdigest())
            return
        # a small file: header, content and padding in one write (the same bytes)
        data = os.read(fd, entry.size)
        while len(data) < entry.size:
            more = os.read(fd, entry.size - len(data))
            if not more:
                raise _shrank(entry)
            data += more
        _check_unchanged(entry, fd)
        if on_content is not None:
            on_content(entry, st, hashlib.sha256(data).hexdigest())
        sink.write(header + data + bytes(-entry.size % BLOCKSIZE))
    finally:
        for fd in fds:
            os.close(fd)


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check_unchanged(entry: TarEntry, fd: int) -> None:
    """A file listed with ``expect`` is still that file after it was read (a write in the
    meantime changes its size, mtime or ctime)."""
    if entry.expect is not None and _identity(os.fstat(fd)) != entry.expect:
        raise _changed(entry)


def _changed(entry: TarEntry, detail: str = "") -> InvalidArgument:
    return InvalidArgument(
        f"copy source {entry.source} changed while it was being copied{detail}: "
        "try again once it is stable"
    )


def _shrank(entry: TarEntry) -> KilnError:
    """A file that ended before its listed size: a COPY source (listed with ``expect``)
    reads like every other change of one; anything else being archived is in use."""
    if entry.expect is not None:
        return _changed(entry, " (it shrank)")
    return Conflict(
        f"{entry.source} shrank while it was being archived; retry when it is not in use"
    )


def entry_as_link(entry: TarEntry, target: str) -> TarEntry:
    """``entry`` as a hard link to ``target``."""
    return TarEntry(
        path=entry.path,
        type="hardlink",
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime=entry.mtime,
        linkname=target,
    )


def write_layer(
    entries: Iterable[TarEntry],
    out: ByteWriter,
    *,
    compression: Compression = Compression.GZIP,
    timestamp: int | None = None,
    level: int | None = None,
    on_content: ContentSeen | None = None,
) -> LayerResult:
    """Write ``entries`` (in the order given) as a layer to ``out``; see the module docstring.

    Regular files sharing a (dev, inode) are written once, then as hard links.
    ``out`` is flushed, not closed. ``on_content``: each regular file's content sha256 is
    taken in the same read (a COPY's cache key needs it: see ``kiln.build.copy_direct``)
    and handed over once the file was read whole and found unchanged.
    """
    compression = Compression(compression)
    sink = _TarSink(out, compression, level)
    links: dict[tuple[int, int], str] = {}
    try:
        for entry in entries:
            if entry.type == "file":
                _write_file(sink, entry, timestamp, links, on_content)
                continue
            linkname = entry.linkname
            if entry.type == "hardlink":
                linkname = clean_path(linkname)
            elif entry.type != "symlink":
                linkname = ""
            sink.write(_header(entry, timestamp, 0, linkname))
        sink.write(_ZERO_BLOCKS)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return LayerResult(
        diff_id=f"sha256:{sink.diff.hexdigest()}",
        digest=sink.blob.digest,
        size=sink.blob.size,
        uncompressed_size=sink.size,
        compression=compression,
    )


__all__ = [
    "ContentSeen",
    "LayerResult",
    "TarEntry",
    "entry_as_link",
    "scan_changes",
    "scan_overlay_upper",
    "scan_tree",
    "sorted_entries",
    "write_layer",
]
