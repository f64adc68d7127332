"""A registry repository as a copy destination (``copy_image(img, RegistrySink(...))``).

Blobs the registry already has are detected with ``HEAD`` and not sent; a blob
the image is known to have in another repository of the same registry is
mounted from there (``mount_from``); the rest are uploaded, monolithically when
small and in chunks otherwise (``kiln.registry`` decides). Layers that need no
conversion can be pushed ahead, several at once, with :meth:`push_layers`;
``copy_image`` then finds them present. The manifest goes last, by tag.
:func:`push_index` pushes an index with every child manifest and its blobs.
"""

from __future__ import annotations

import contextvars
import io
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO, cast

from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image.model import Image, SourceImage
from kiln.oci import media_types as mt
from kiln.oci.blobs import BlobSource
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import Index, Manifest
from kiln.oci.reference import Reference
from kiln.oci.strict_json import canonical, loads_object
from kiln.registry import RegistryClient
from kiln.util.cancel import cancel_flag, cancel_scope, raise_if_cancelled

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: ``progress(kind, desc, state)``: kind "blob"/"config"; state "start", "done",
#: "exists", "mounted"
SinkProgress = Callable[[str, Descriptor, str], None]
#: ``on_bytes(kind, desc, sent)``: ``sent`` bytes of ``desc`` uploaded so far (from 0 again
#: when an upload is retried)
SinkBytes = Callable[[str, Descriptor, int], None]


class _Reopenable(io.RawIOBase):
    """A view of a seekable stream from ``start``; closing it leaves the stream open.
    ``on_read(n)`` hears the bytes read so far after every read; once ``cancel`` (the
    push's cancel flag) is set, the next read ends the upload."""

    def __init__(
        self,
        stream: BinaryIO,
        start: int,
        on_read: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ):
        self._stream = stream
        self._on_read = on_read
        self._cancel = cancel
        self._read = 0
        stream.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        raise_if_cancelled(self._cancel)
        view = memoryview(b).cast("B")
        data = self._stream.read(len(view))
        n = len(data)
        view[:n] = data
        if self._on_read is not None and n:
            self._read += n
            self._on_read(self._read)
        return n


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


class RegistrySink:
    """``ref``'s repository as a destination; ``put_manifest`` stores by ``ref``'s tag."""

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        *,
        mount_from: Sequence[Reference] = (),
        progress: SinkProgress | None = None,
        on_bytes: SinkBytes | None = None,
        tmp_dir: str | None = None,
        config_digest: Digest | None = None,
        annotations: dict[str, str] | None = None,
    ):
        self.client = client
        self.annotations = dict(annotations or {})  # added to the manifest put (OCI only)
        self.ref = ref
        self.mount_from = [m for m in mount_from if m.domain == ref.domain and m.path != ref.path]
        self.progress = progress or (lambda *a: None)
        self.on_bytes = on_bytes
        self.tmp_dir = tmp_dir
        self.config_digest = config_digest
        self.present: set[Digest] = set()
        self._missing: set[Digest] = set()  # asked just now: put_blob need not ask again
        self.manifest_digest: Digest | None = None
        self.manifest_size = 0
        self._lock = threading.Lock()

    def _report(self, kind: str, desc: Descriptor, state: str) -> None:
        with self._lock:
            self.progress(kind, desc, state)

    def _sent_of(self, kind: str, desc: Descriptor) -> Callable[[int], None] | None:
        on_bytes = self.on_bytes
        if on_bytes is None:
            return None

        def sent(n: int) -> None:
            with self._lock:
                on_bytes(kind, desc, n)

        return sent

    def _kind(self, desc: Descriptor) -> str:
        return (
            "config" if desc.digest == self.config_digest or "config" in desc.media_type else "blob"
        )

    def has_blob(self, digest: Digest) -> bool:
        if digest in self.present:
            return True
        if self.client.has_blob(self.ref, digest):
            self.present.add(digest)
            self._report("blob", Descriptor("", digest, 0), "exists")
            return True
        with self._lock:
            self._missing.add(digest)
        return False

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if _seekable(stream):
            self._push(desc, stream)
            return
        if self.tmp_dir:
            os.makedirs(self.tmp_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.tmp_dir, prefix="kiln-push-") as spool:
            while chunk := stream.read(1 << 20):
                spool.write(chunk)
            self._push(desc, spool)

    def _push(self, desc: Descriptor, stream: BinaryIO) -> None:
        start = stream.tell()
        kind = self._kind(desc)
        self._report(kind, desc, "start")
        mount = self.mount_from[0] if self.mount_from else None
        with self._lock:
            asked = desc.digest in self._missing
            self._missing.discard(desc.digest)
        cancel = cancel_flag()  # set on Ctrl-C (push_layers), or when an API client goes away
        outcome = self.client.push_blob(
            self.ref,
            desc,
            lambda: cast(BinaryIO, _Reopenable(stream, start, self._sent_of(kind, desc), cancel)),
            mount_from=mount,
            check_exists=not asked,
        )
        self.present.add(desc.digest)
        self._report(kind, desc, "done" if outcome == "uploaded" else outcome)

    def push_blob_from(self, source: BlobSource, desc: Descriptor) -> None:
        """Push one blob of ``source`` as it is, unless the registry has it."""
        if self.has_blob(desc.digest):
            return
        with source.open_blob(desc.digest) as f:
            self.put_blob(desc, f)

    def push_layers(self, image: Image, workers: int = 4, config: bool = False) -> None:
        """Push ``image``'s layer blobs (and with ``config`` its config blob) unchanged,
        ``workers`` at a time."""
        wanted = [d for d in image.layers if not d.urls]
        if config:
            wanted.append(image.manifest.config)
        descs = list({d.digest: d for d in wanted}.values())
        pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="kiln-push")
        with cancel_scope() as stop, pool:  # the uploads' socket reads end once it is set
            futures = []
            try:  # the submits inside: a Ctrl-C as a worker starts must stop the ones started
                for d in descs:
                    run = contextvars.copy_context().run
                    futures.append(pool.submit(run, self.push_blob_from, image.blobs, d))
                errors = [e for e in (f.exception() for f in futures) if e is not None]
            except BaseException:  # Ctrl-C: uploads stop at their next read, none starts
                stop.set_for("interrupted")
                for f in futures:
                    f.cancel()
                raise
        if errors:
            raise errors[0]

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        if self.annotations:
            raw = _annotated(raw, media_type, self.annotations)
        digest = self.client.put_manifest(self.ref, raw, media_type)
        self.manifest_digest, self.manifest_size = digest, len(raw)
        return Descriptor(media_type, digest, len(raw))


def _annotated(raw: bytes, media_type: str, annotations: dict[str, str]) -> bytes:
    """``raw`` with ``annotations`` added (an inline build cache); Docker v2 schema 2
    manifests have no annotations."""
    if media_type != mt.OCI_MANIFEST:
        raise InvalidArgument(
            f"annotations need an OCI manifest, not {media_type}: build with --format oci"
        )
    obj = loads_object(raw, what="manifest")
    obj["annotations"] = {**(obj.get("annotations") or {}), **annotations}
    return canonical(obj)


def push_index(
    client: RegistryClient,
    source: BlobSource,
    index_raw: bytes,
    media_type: str,
    ref: Reference,
    *,
    progress: SinkProgress | None = None,
    on_bytes: SinkBytes | None = None,
    workers: int = 4,
) -> Digest:
    """Push an index from ``source``: every child's blobs and manifest (by digest), then
    the index itself under ``ref``. Returns the index digest."""
    index = Index.parse(index_raw, media_type)
    for child in index.manifests:
        with source.open_blob(child.digest) as f:
            raw = f.read()
        if Digest.of_bytes(raw, child.digest.algorithm) != child.digest:
            raise DigestMismatch(f"manifest {child.digest} in the source does not match its digest")
        manifest = Manifest.parse(raw, child.media_type)
        sink = RegistrySink(client, ref, progress=progress, on_bytes=on_bytes,
                            config_digest=manifest.config.digest)  # fmt: skip
        sink.push_layers(SourceImage(source, manifest), workers)  # reads no config
        sink.push_blob_from(source, manifest.config)
        client.put_manifest(ref.with_digest(str(child.digest)), raw, manifest.media_type)
    return client.put_manifest(ref, index_raw, media_type)


__all__ = ["RegistrySink", "SinkBytes", "SinkProgress", "push_index"]
