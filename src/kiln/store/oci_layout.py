"""OCI image layouts as blob sources and sinks: a directory, or a tar of one (oci-archive).

A layout is ``oci-layout`` + ``index.json`` + ``blobs/<alg>/<hex>``. Images are
picked by the ``org.opencontainers.image.ref.name`` annotation of an
``index.json`` entry (the containers/image convention). Readers verify every
blob against its digest as it is read; writers verify before keeping.

An oci-archive is read in place: tar headers are indexed once and members are
read by offset (``os.pread``), never extracted. A compressed archive is first
decompressed into an anonymous temporary file. Member names that escape the
archive root are refused.

Imports only kiln.oci, kiln.archive and kiln.errors (this is an L1 transport).
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from kiln.archive.compression import CHUNK, Compression, detect, open_decompressed
from kiln.errors import DigestMismatch, InvalidArgument, NotFound
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest, Digester
from kiln.oci.manifest import Index
from kiln.oci.strict_json import MAX_MANIFEST_BYTES, canonical, loads_object
from kiln.util.atomic import AtomicFile, atomic_write
from kiln.util.locks import directory_lock
from kiln.util.output import Output, naming, open_output, output_dir, output_stream
from kiln.util.regular_file import open_regular_file

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_BYTES = canonical({"imageLayoutVersion": "1.0.0"})


# --- streams -------------------------------------------------------------------------


class VerifyingReader(io.RawIOBase):
    """Reads ``inner`` and raises DigestMismatch at EOF if digest (or size) differ."""

    def __init__(self, inner: BinaryIO, digest: Digest, size: int | None = None, what: str = ""):
        self._inner = inner
        self._digest = digest
        self._size = size
        self._hash = Digester(digest.algorithm)
        self._what = what or f"blob {digest}"
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            self._hash.update(data)
            if self._size is not None and self._hash.size > self._size:
                raise DigestMismatch(
                    f"{self._what} is larger than its declared {self._size} bytes; "
                    "the source is corrupt",
                    str(self._digest),
                )
        elif not self._checked:
            self._check()
        return n

    def _check(self) -> None:
        self._checked = True
        got = self._hash.digest()
        if self._size is not None and self._hash.size != self._size:
            raise DigestMismatch(
                f"{self._what} has {self._hash.size} bytes, expected {self._size}; "
                "the source is truncated or corrupt",
                str(self._digest),
                str(got),
            )
        if got != self._digest:
            raise DigestMismatch(
                f"{self._what} does not match its digest (got {got}); the source is corrupt",
                str(self._digest),
                str(got),
            )

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class SectionReader(io.RawIOBase):
    """A read-only window ``[offset, offset+size)`` of a file descriptor, via pread."""

    def __init__(self, fd: int, offset: int, size: int):
        self._fd = fd
        self._start = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._start + self._pos)
        if not data:
            raise InvalidArgument("archive member is cut short; the archive is truncated")
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def read_all(stream: BinaryIO, limit: int, what: str) -> bytes:
    """Read a small document whole, refusing more than ``limit`` bytes."""
    with stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{what} is over the {limit}-byte limit")
    return data


# --- tar member index -------------------------------------------------------------------


def clean_member_name(name: str) -> str:
    """``./a//b/`` -> ``a/b``; refuses absolute names and ``..`` components."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise InvalidArgument(
            f'archive member "{name}" points outside the archive; refusing a hostile archive'
        )
    return "/".join(parts)


class TarIndex:
    """Regular-file members of a tar file by name, read in place by offset.

    Symbolic and hard links between members are followed (``docker save`` links
    identical layers); links that leave the archive are refused.
    """

    def __init__(self, path: str, tmp_dir: str | None = None):
        self.path = path
        try:
            raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - kept open for pread
        except FileNotFoundError:
            raise NotFound(f"archive {path} does not exist") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{path} is a directory, not an archive file") from None
        head = raw.read(6)
        raw.seek(0)
        if detect(head) is not Compression.NONE:
            raw = self._spool_decompressed(raw, tmp_dir)
        self._file = raw
        self._fd = raw.fileno()
        self._files: dict[str, tuple[int, int]] = {}
        self._links: dict[str, str] = {}
        self._scan()

    @staticmethod
    def _spool_decompressed(raw: BinaryIO, tmp_dir: str | None) -> BinaryIO:
        spool = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - returned
        with raw, open_decompressed(raw) as src:
            while chunk := src.read(CHUNK):
                spool.write(chunk)
        spool.flush()
        spool.seek(0)
        return spool

    def _scan(self) -> None:
        try:
            with tarfile.open(fileobj=self._file, mode="r:") as tar:
                for info in tar:
                    name = clean_member_name(info.name)
                    if info.isreg():
                        self._files[name] = (info.offset_data, info.size)
                        self._links.pop(name, None)
                    elif info.issym() or info.islnk():
                        base = "" if info.islnk() else os.path.dirname(name)
                        target = info.linkname
                        if info.issym() and target.startswith("/"):
                            raise InvalidArgument(
                                f'archive member "{info.name}" links outside the archive'
                            )
                        joined = posixpath.normpath(posixpath.join(base, target))
                        self._links[name] = clean_member_name(joined)
                        self._files.pop(name, None)
        except tarfile.TarError as exc:
            if "unexpected end" in str(exc):
                raise InvalidArgument(
                    f"{self.path} is truncated (the tar archive ends inside a member)"
                ) from None
            raise InvalidArgument(f"{self.path} is not a readable tar archive: {exc}") from None

    def _resolve(self, name: str) -> str:
        name = clean_member_name(name)
        for _ in range(16):
            if name in self._files:
                return name
            if name not in self._links:
                raise NotFound(f'archive {self.path} has no member "{name}"')
            name = self._links[name]
        raise InvalidArgument(f"archive {self.path} has a link loop at {name}")

    def has(self, name: str) -> bool:
        try:
            self._resolve(name)
        except NotFound:
            return False
        return True

    def size(self, name: str) -> int:
        return self._files[self._resolve(name)][1]

    def open(self, name: str) -> BinaryIO:
        offset, size = self._files[self._resolve(name)]
        return io.BufferedReader(SectionReader(self._fd, offset, size), CHUNK)

    def read_bytes(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        return read_all(self.open(name), limit, f'archive member "{name}"')

    def names(self) -> list[str]:
        return sorted(set(self._files) | set(self._links))

    def close(self) -> None:
        self._file.close()


# --- reading layouts -----------------------------------------------------------------------


def blob_member(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


class _LayoutReader:
    """What every layout reader shares: index.json parsing and picking an image."""

    location = ""

    def _read_member(self, name: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _open_member(self, name: str) -> BinaryIO:  # pragma: no cover - abstract
        raise NotImplementedError

    def _has_member(self, name: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_layout(self) -> None:
        try:
            obj = loads_object(self._read_member(LAYOUT_FILE), what=f"{self.location}/oci-layout")
        except NotFound:
            raise InvalidArgument(
                f"{self.location} is not an OCI image layout (no oci-layout file)"
            ) from None
        if obj.get("imageLayoutVersion") != "1.0.0":
            raise InvalidArgument(
                f"{self.location}: unsupported imageLayoutVersion {obj.get('imageLayoutVersion')!r}"
            )

    def index(self) -> Index:
        try:
            raw = self._read_member(INDEX_FILE)
        except NotFound:
            return Index.build(mt.OCI_INDEX, [])
        return Index.parse(raw, mt.OCI_INDEX)

    def ref_names(self) -> list[str]:
        return [
            m.annotations[REF_NAME] for m in self.index().manifests if REF_NAME in m.annotations
        ]

    def resolve(self, ref_name: str | None = None) -> Descriptor:
        """The index.json entry named ``ref_name`` (or with that digest); the only one if None."""
        entries = self.index().manifests
        if ref_name is None or ref_name == "":
            if len(entries) == 1:
                return entries[0]
            if not entries:
                raise NotFound(f"{self.location} holds no images")
            names = ", ".join(m.annotations.get(REF_NAME, str(m.digest)) for m in entries)
            raise InvalidArgument(
                f"{self.location} holds {len(entries)} images ({names}); say which one"
            )
        for entry in entries:
            if entry.annotations.get(REF_NAME) == ref_name or str(entry.digest) == ref_name:
                return entry
        raise NotFound(
            f'{self.location} has no image named "{ref_name}" '
            f"(it has: {', '.join(self.ref_names()) or 'no named images'})"
        )

    def has_blob(self, digest: Digest) -> bool:
        return self._has_member(blob_member(digest))

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            stream = self._open_member(blob_member(digest))
        except NotFound:
            raise NotFound(f"blob {digest} is not in {self.location}") from None
        return io.BufferedReader(
            VerifyingReader(stream, digest, what=f"blob {digest} in {self.location}"), CHUNK
        )


class OCIArchive(_LayoutReader):
    """A read-only oci-archive (a tar of an OCI layout), read in place."""

    def __init__(self, path: str, tmp_dir: str | None = None):
        self.location = path
        self._tar = TarIndex(path, tmp_dir)
        self._check_layout()

    def _read_member(self, name: str) -> bytes:
        return self._tar.read_bytes(name)

    def _open_member(self, name: str) -> BinaryIO:
        return self._tar.open(name)

    def _has_member(self, name: str) -> bool:
        return self._tar.has(name)

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> OCIArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- writing --------------------------------------------------------------------------------


def _index_with(index: Index, desc: Descriptor, names: Sequence[str]) -> Index:
    """``index`` plus ``desc`` once per name (taking each name from older entries)."""
    kept = [
        m
        for m in index.manifests
        if m.annotations.get(REF_NAME) not in names
        and not (not names and m.digest == desc.digest and REF_NAME not in m.annotations)
    ]
    if names:
        kept += [desc.replace(annotations={**desc.annotations, REF_NAME: n}) for n in names]
    else:
        kept.append(desc)
    return Index.build(mt.OCI_INDEX, kept)


class OCILayout(_LayoutReader):
    """An OCI image layout directory: a blob source and sink with a named index."""

    def __init__(self, path: str, create: bool = False):
        self.location = self.path = path
        if create and not os.path.exists(os.path.join(path, LAYOUT_FILE)):
            output_dir(path, "an OCI layout")
            with naming(path):
                os.makedirs(os.path.join(path, "blobs"), exist_ok=True)
                atomic_write(os.path.join(path, LAYOUT_FILE), LAYOUT_BYTES)
                if not os.path.exists(os.path.join(path, INDEX_FILE)):
                    empty = Index.build(mt.OCI_INDEX, []).raw
                    atomic_write(os.path.join(path, INDEX_FILE), empty)
        if not os.path.isdir(path):
            raise NotFound(f"OCI layout directory {path} does not exist")
        self._check_layout()

    def _member_path(self, name: str) -> str:
        return os.path.join(self.path, *clean_member_name(name).split("/"))

    def _read_member(self, name: str) -> bytes:
        return read_all(self._open_member(name), MAX_MANIFEST_BYTES, f"{self.path}/{name}")

    def _open_member(self, name: str) -> BinaryIO:
        path = self._member_path(name)
        try:
            return open_regular_file(path, "the layout's file")
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None

    def _has_member(self, name: str) -> bool:
        return os.path.isfile(self._member_path(name))

    def blob_path(self, digest: Digest) -> str:
        return self._member_path(blob_member(digest))

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Write ``stream`` to blobs/, verifying digest and size before it becomes visible."""
        final = self.blob_path(desc.digest)
        with naming(self.path):
            os.makedirs(os.path.dirname(final), exist_ok=True)
        with AtomicFile(final, prefix=".tmp-") as out:
            dest = output_stream(out.file, self.path)  # a full disk names this layout
            reader = VerifyingReader(stream, desc.digest, desc.size)
            while chunk := reader.read(CHUNK):
                dest.write(chunk)
            dest.flush()

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, Digest.of_bytes(data), len(data))
        if not self.has_blob(desc.digest):
            self.put_blob(desc, io.BytesIO(data))
        return desc

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        """Store a manifest (or index) and list it in index.json under each of ``names``.
        index.json is read, changed and replaced under a lock on the layout directory, so
        writers at once (two builders exporting caches to one directory) lose no name."""
        desc = self.put_bytes(raw, media_type)
        with naming(self.path), directory_lock(self.path):
            index = _index_with(self.index(), desc, list(names))
            atomic_write(os.path.join(self.path, INDEX_FILE), index.raw)
        return desc


class TarStream:
    """A deterministic tar, written to an output path or to a stream.

    Members get mtime 0, uid/gid 0, mode 0644 (dirs 0755) and PAX headers, so the
    same members in the same order give the same bytes. ``add_stream`` verifies
    the data against a descriptor and cuts it off again on mismatch.

    A path is written as ``kiln.util.output`` says: a regular file (or a new name)
    through a temp file renamed into place on commit, a device or FIFO directly.
    Given a writable binary stream instead (a pipe, a socket, an HTTP response), the
    same bytes are written to it sequentially and nothing is spooled: the stream
    needs neither ``seek`` nor ``tell``, and is not closed. Unless the output is a
    temp file, a member that fails midway cannot be cut off, so the tar is then
    broken: every later call raises, and the caller must abandon the stream.
    """

    def __init__(self, target: str | BinaryIO):
        self._dirs: set[str] = set()
        self.done = False
        self._broken = False
        self._output: Output | None = None
        if not isinstance(target, str):
            self.path = None
            self._out: BinaryIO = target
        else:
            self.path = target
            self._output = open_output(target)
            self._out = self._output.file
        self._seekable = self._output is not None and self._output.atomic

    def _check(self) -> None:
        if self._broken:
            raise InvalidArgument("the archive stream was cut off by an earlier error")

    def _header(self, name: str, size: int, directory: bool = False) -> None:
        info = tarfile.TarInfo(name + ("/" if directory else ""))
        info.size = 0 if directory else size
        info.mode = 0o755 if directory else 0o644
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mtime = 0
        self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            self._out.write(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def _ensure_dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._header(d, 0, directory=True)

    def add_stream(self, name: str, desc: Descriptor, stream: BinaryIO) -> None:
        self._check()
        self._broken = not self._seekable  # a stream cannot take back a partial member
        self._ensure_dirs(name)
        start = self._out.tell() if self._seekable else 0
        try:
            self._header(name, desc.size)
            reader = VerifyingReader(stream, desc.digest, desc.size)
            while chunk := reader.read(CHUNK):
                self._out.write(chunk)
        except BaseException:
            if self._seekable:
                self._out.seek(start)
                self._out.truncate()
            raise
        self._pad(desc.size)
        self._broken = False

    def add_file(self, name: str, data: bytes) -> None:
        self._check()
        self._ensure_dirs(name)
        self._header(name, len(data))
        self._out.write(data)
        self._pad(len(data))

    def commit(self) -> None:
        if self.done:
            return
        self._check()
        self._out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        self._out.flush()
        if self._output is not None:
            self._output.commit()
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        if self._output is None:
            self._broken = True  # the caller owns (and abandons) the stream
        else:
            self._output.abort()


class ArchiveWriter:
    """``with Writer(...) as w:`` commits the archive on success and aborts it (no file
    left) on an exception; subclasses define ``commit`` and ``abort``."""

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class OCIArchiveWriter(ArchiveWriter):
    """Writes an oci-archive as a deterministic tar, streamed straight to its file.

    Blobs are appended as they arrive (verified; a bad blob is cut off again),
    ``oci-layout`` and ``index.json`` at ``commit()``; the file appears under
    its name only when complete. Use as a context manager (an exception aborts).
    ``target`` may also be a writable binary stream, written sequentially with
    the same bytes (see TarStream).
    """

    def __init__(self, target: str | BinaryIO):
        self.path = target if isinstance(target, str) else None
        self._tar = TarStream(target)
        self._blobs: set[Digest] = set()
        self._index = Index.build(mt.OCI_INDEX, [])

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._blobs

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if desc.digest not in self._blobs:
            self._tar.add_stream(blob_member(desc.digest), desc, stream)
            self._blobs.add(desc.digest)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, Digest.of_bytes(data), len(data))
        self.put_blob(desc, io.BytesIO(data))
        return desc

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        desc = self.put_bytes(raw, media_type)
        self._index = _index_with(self._index, desc, list(names))
        return desc

    def commit(self) -> None:
        if not self._tar.done:
            self._tar.add_file(LAYOUT_FILE, LAYOUT_BYTES)
            self._tar.add_file(INDEX_FILE, self._index.raw)
            self._tar.commit()

    def abort(self) -> None:
        self._tar.abort()


def image_names(entries: Iterable[Descriptor]) -> list[str]:
    return [e.annotations[REF_NAME] for e in entries if REF_NAME in e.annotations]


__all__ = [
    "REF_NAME",
    "OCIArchive",
    "OCIArchiveWriter",
    "OCILayout",
    "SectionReader",
    "TarIndex",
    "TarStream",
    "VerifyingReader",
    "blob_member",
    "clean_member_name",
    "image_names",
    "read_all",
]
