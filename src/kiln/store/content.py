"""Content-addressed blobs: ``blobs/<alg>/<hex>``, written only through ingest.

Satisfies ``kiln.oci.BlobSource`` and ``BlobSink``. Every blob reaches its final
name by an atomic rename of a verified, fsynced temp file, so two writers of the
same blob (threads or processes) both succeed and readers never see part of one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import Descriptor, Digest
from kiln.store import paths
from kiln.store.db import Database
from kiln.store.ingest import CHUNK, Ingest
from kiln.store.leases import Leases
from kiln.util.atomic import fsync_all
from kiln.util.held_signals import opened
from kiln.util.locks import file_lock

OCTET_STREAM = "application/octet-stream"


class Content:
    """The content role: read (``open_blob``), ingest (``ingest``/``put_blob``/``publish``)
    and manage (``delete_blob``/``iter_blobs``) the blobs under ``root``; every blob made
    visible joins the open leases (``leases``) in the transaction that publishes it."""

    def __init__(self, root: str, db: Database, leases: Leases):
        self.root = root
        self.db = db
        self._leases = leases

    def blob_path(self, digest: Digest) -> str:
        return paths.blob_path(self.root, _digest(digest))

    def has_blob(self, digest: Digest) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def open_blob(self, digest: Digest) -> BinaryIO:
        """The blob's bytes; ``NotFound`` if the store does not have it."""
        try:
            return open(self.blob_path(digest), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None

    def blob_bytes(self, digest: Digest, limit: int, what: str = "blob") -> bytes:
        """A small blob read whole, as it is stored (not verified against its digest):
        ``NotFound`` if the store does not have it, ``InvalidArgument`` if it is over
        ``limit`` bytes. Four system calls and a buffer of the blob's size, where a
        buffered ``read(limit)`` costs twice the calls and maps ``limit`` bytes (a server
        reads two for every image inspect)."""
        try:
            fd = os.open(self.blob_path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                raise InvalidArgument(f"{what} {digest} is over the {limit}-byte limit")
            data = os.read(fd, size)
            while len(data) < size:  # a regular file reads whole; a short read goes on
                more = os.read(fd, size - len(data))
                if not more:
                    break
                data += more
            return data
        finally:
            os.close(fd)

    def blob_size(self, digest: Digest) -> int:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None

    def ingest(self, ref: str, expected: Descriptor | None = None) -> Ingest:
        """Start or resume writing a blob. ``ref=""`` is a one-shot, non-resumable ingest."""
        return Ingest(self, ref, expected)

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        """Copy ``stream`` in 1 MiB chunks, verifying digest and size; mismatch keeps nothing.

        A blob the store already has (same digest and size) is not read again:
        it only joins the open leases and restarts its GC grace period.
        """
        if self._reuse_blob(desc):
            return
        with self.ingest("", desc) as ing:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                ing.write(chunk)
            ing.commit()

    def put_bytes(self, data: bytes) -> Digest:
        digest = Digest.of_bytes(data)
        self.put_blob(Descriptor(OCTET_STREAM, digest, len(data)), io.BytesIO(data))
        return digest

    def delete_blob(self, digest: Digest) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the store") from None

    def iter_blobs(self) -> Iterator[Digest]:
        base = os.path.join(self.root, paths.BLOBS)
        for algorithm in sorted(os.listdir(base)):
            try:
                names = os.listdir(os.path.join(base, algorithm))
            except NotADirectoryError:
                continue
            for name in names:
                try:
                    yield Digest.parse(f"{algorithm}:{name}")
                except InvalidArgument:
                    continue

    def _reuse_blob(self, desc: Descriptor) -> bool:
        final = self.blob_path(desc.digest)
        gc_lock = os.path.join(self.root, paths.GC_LOCK)
        with file_lock(gc_lock, exclusive=False):
            try:
                if os.stat(final).st_size != desc.size:
                    return False
            except FileNotFoundError:
                return False
            self._join_leases(desc.digest)
            os.utime(final)
        return True

    def lease_existing_blob(self, digest: Digest, lease: object = None) -> bool:
        """Keep ``digest`` if the store has it; False (and nothing held) if it does not.

        In one step under the shared GC lock, the blob joins ``lease`` (if given) and
        the open leases, and its GC grace period restarts, so no GC can sweep
        it between this check and its use. Use it instead of ``has_blob`` when the
        answer decides whether to reuse the blob.
        """
        final = self.blob_path(digest)
        gc_lock = os.path.join(self.root, paths.GC_LOCK)
        with file_lock(gc_lock, exclusive=False):
            try:
                os.utime(final)
            except FileNotFoundError:
                return False
            self._join_leases(_digest(digest), lease)
        return True

    def _join_leases(self, digest: Digest, lease: object = None) -> None:
        self._leases.join_blobs([digest], lease)

    def sealed_bytes(self, desc: Descriptor, data: bytes) -> Ingest | None:
        """``data`` as a sealed (verified, unpublished) anonymous ingest for ``publish``, or
        None when the store has that blob already (it joins the open leases, as
        ``put_blob`` does). The caller closes the ingest (``publish`` finishes it)."""
        if self._reuse_blob(desc):
            return None
        ing = self.ingest("", desc)
        try:
            ing.write(data)
            ing.seal()
        except BaseException:
            ing.close()
            raise
        return ing

    def publish(self, ingests: list[Ingest | None], then: Callable[[], None] | None = None) -> None:
        """Make sealed ingests visible as blobs, together: their data fsynced at once (one
        wait for the disk, not one per blob), each renamed or linked into place, each
        blob directory fsynced once, and every blob joining the open leases in one
        transaction -- which ``then`` (the rows that reference the blobs: an image) joins,
        so they become visible together. ``None`` entries are skipped.

        Runs under the shared GC lock, so a GC cannot mark before the lease rows
        exist and sweep after the rename. An existing blob gets its mtime
        refreshed, which restarts its GC grace period.
        """
        todo = [i for i in ingests if i is not None]
        for ing in todo:
            if ing.sealed is None:
                raise InvalidArgument("an ingest must be sealed (verified) before it is published")
        fsync_all([ing.fd for ing in todo])
        gc_lock = os.path.join(self.root, paths.GC_LOCK)
        with file_lock(gc_lock, exclusive=False), self.db.transaction():
            dirs: set[str] = set()
            self._leases.join_blobs([ing.sealed for ing in todo])
            for ing in todo:
                assert ing.sealed is not None
                if self._place(ing, ing.sealed):
                    dirs.add(os.path.dirname(self.blob_path(ing.sealed)))
            fsync_all([], dirs=sorted(dirs))
            if then is not None:
                then()
        for ing in todo:
            ing.published()

    def _place(self, ing: Ingest, digest: Digest) -> bool:
        """Rename or link ``ing``'s data to its blob name; False if the blob was there."""
        final = self.blob_path(digest)
        temp_path, link = ing.temp_path()
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.exists(final):
            os.utime(final)
            return False
        if link:
            try:
                _link_magic(temp_path, final)
            except FileExistsError:  # another writer published it meanwhile
                os.utime(final)
                return False
        else:
            os.rename(temp_path, final)
        return True


def _link_magic(proc_fd_path: str, final: str) -> None:
    """Link the file a ``/proc/self/fd/N`` link names (an ``O_TMPFILE``) at ``final``:
    ``linkat`` with ``AT_SYMLINK_FOLLOW`` (os.link without a dir fd would call link(2),
    which links the magic link itself)."""
    parent, name = os.path.split(proc_fd_path)
    with opened(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) as dfd:
        os.link(name, final, src_dir_fd=dfd, follow_symlinks=True)


def _digest(value: Digest | str) -> Digest:
    return value if isinstance(value, Digest) else Digest.parse(str(value))
