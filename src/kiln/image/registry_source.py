"""A registry as an image source: manifests resolved to one platform, blobs streamed
into the store concurrently, verified on the way in.

:func:`resolve_remote` reads the manifest a reference names (asking for every
manifest type), follows an index or manifest list to the requested platform and
reads Docker v2 schema 1 manifests. :func:`pull_into_store` then fetches the
config and the layers the store lacks on a small thread pool: each blob streams
from the registry into a store ingest while its digest and size are checked (and
a layer is inflated to measure it); a mismatch aborts that ingest, so nothing
wrong is ever kept. Given a snapshotter, each layer is unpacked as it arrives into a
staged tree that is recorded only after the blob's digest and the config's diff_id
both match; without one, a layer's diff_id is checked when the snapshotter first
unpacks it (see :func:`fetch_blob`). A connection that breaks mid-blob is resumed with a
``Range`` request (restarted when the server ignores ranges), up to the
client's retry count with doubling backoff. The image is registered in one
store transaction only after every blob is in.

Imports registry (L1) and store; never ops or above.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import field
from typing import TYPE_CHECKING, BinaryIO, Protocol

from kiln.errors import Cancelled, InvalidArgument, NotFound, Unavailable
from kiln.image.layers import Inflater
from kiln.image.model import SourceImage
from kiln.image.store_image import register_image
from kiln.image.unpack import unpack_stored
from kiln.oci import media_types as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest, Digester
from kiln.oci.manifest import Index, Manifest
from kiln.oci.platform import Platform
from kiln.oci.reference import Reference
from kiln.oci.schema1 import Schema1Manifest
from kiln.oci.strict_json import MAX_CONFIG_BYTES
from kiln.registry import RegistryClient
from kiln.snapshot.staged import StagedLayer, discard_staged
from kiln.store import ImageRecord, Store
from kiln.util.atomic import WritebackEvery
from kiln.util.cancel import CancelFlag, cancel_scope
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.archive.streams import ByteReader
    from kiln.registry.blob_reader import BlobReader
    from kiln.snapshot.snapshotter import Snapshotter
    from kiln.store.ingest import Ingest
    from kiln.store.leases import Lease

READ_SIZE = 1 << 20  # hand-over size between the threads (larger ones fall out of the caches)
DEFAULT_WORKERS = 4

#: ``progress(kind, desc, done, state)``: kind "config"/"blob"; state "start", "bytes",
#: "done", "skipped"
Progress = Callable[[str, Descriptor, int, str], None]


class RegistryBlobs:
    """The blobs of one repository as a ``BlobSource`` (streamed, verified by the caller)."""

    def __init__(self, client: RegistryClient, ref: Reference):
        self.client = client
        self.ref = ref

    def has_blob(self, digest: Digest) -> bool:
        return self.client.has_blob(self.ref, digest)

    def open_blob(self, digest: Digest) -> BinaryIO:
        return io.BufferedReader(self.client.open_blob(self.ref, digest), READ_SIZE)


@dataclass
class RemoteImage:
    """What a reference resolved to: one image manifest (or a schema 1 manifest)."""

    ref: Reference  # the reference as asked (tag and/or digest)
    manifest_digest: Digest  # of the platform's manifest
    media_type: str
    raw: bytes
    manifest: Manifest | None = None  # None for schema 1
    schema1: Schema1Manifest | None = None
    index_digest: Digest | None = None  # when the reference named an index
    digests: list[Digest] = field(default_factory=list)  # for RepoDigests

    def source(self, client: RegistryClient) -> SourceImage:
        """A lazy Image over the registry (schema 2 only)."""
        if self.manifest is None:
            raise InvalidArgument(f"{self.ref}: a schema 1 image must be pulled before use")
        return SourceImage(RegistryBlobs(client, self.ref), self.manifest)


def resolve_remote(
    client: RegistryClient, ref: Reference, platform: Platform | None = None
) -> RemoteImage:
    """The manifest ``ref`` names, following an index to ``platform`` (default: the host's)."""
    raw, media_type, digest = client.get_manifest(ref)
    index_digest = None
    if mt.is_index(media_type):
        index_digest = digest
        index = Index.parse(raw, media_type)
        child = index.select(platform or Platform.host())
        raw, media_type, digest = client.get_manifest(ref.with_digest(str(child.digest)))
        if mt.is_index(media_type):
            raise InvalidArgument(f"{ref}: nested image indexes are not supported")
    digests = [d for d in (index_digest, digest) if d is not None]
    if media_type in mt.SCHEMA1:
        s1 = Schema1Manifest.parse(raw, media_type)
        return RemoteImage(ref, digest, media_type, raw, schema1=s1, digests=digests)
    manifest = Manifest.parse(raw, media_type)
    return RemoteImage(ref, digest, media_type, raw, manifest, None, index_digest, digests)


# -- one blob, streamed into the store --------------------------------------------------------


class _TarHasher:
    """Push-style: decompress (gzip members / zstd frames), measure the tar inside and,
    with ``hash_tar``, hash it (its diff_id). A corrupt stream is remembered, not raised,
    so the download finishes and the caller decides."""

    def __init__(self, compression: str, hash_tar: bool = True):
        self.compression = compression
        self.hash = Digester() if hash_tar else None
        self.size = 0
        self._inflater = Inflater(compression)
        self.error = ""

    def feed(self, data: bytes) -> None:
        if self.error:
            return
        try:
            pieces = self._inflater.feed(data)
        except InvalidArgument as exc:
            self.error = str(exc)
            return
        for piece in pieces:
            self.size += len(piece)
            if self.hash is not None:
                self.hash.update(piece)

    def result(self) -> tuple[str, int]:
        """(diff_id or "" when not hashed, uncompressed size)."""
        if self.error:
            raise InvalidArgument(self.error)
        if not self._inflater.finished:
            raise InvalidArgument(f"{self.compression} layer data is truncated")
        return (str(self.hash.digest()) if self.hash is not None else ""), self.size


@dataclass(frozen=True)
class Fetched:
    desc: Descriptor
    diff_id: str = ""
    uncompressed_size: int = 0
    data: bytes | None = None  # small blobs (configs) kept for the caller


def fetch_blob(
    client: RegistryClient,
    ref: Reference,
    store: Store,
    desc: Descriptor,
    *,
    layer: bool,
    measure_diff_id: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    keep: bool = False,
    staged: StagedLayer | None = None,
) -> Fetched:
    """Stream one blob into the store, verified (digest and size); resumes a broken
    connection.

    Three threads share the work: this one reads the network, a second writes the
    ingest (which hashes the blob as it writes), a third inflates a layer to
    measure its uncompressed size and to check that the stream is whole. hashlib,
    the inflaters and write() release the GIL, so with spare cores the pull runs
    at the pace of its slowest stage.

    A layer's diff_id (the hash of its tar) is not computed here: the snapshotter
    computes it when it unpacks the layer and refuses a layer whose tar does not
    match the config (``Snapshotter.unpack_layer``, ``validate_image``), so a
    wrong diff_id never becomes a usable filesystem, and the tar is hashed once
    per pull-and-unpack instead of twice. ``measure_diff_id`` hashes it anyway,
    for schema 1 images, whose config is synthesised from the measured diff_ids.

    ``staged``: the third thread unpacks the layer into it instead (a
    ``Snapshotter.stage_layer``), measuring its size and diff_id on the way, so a
    first build on the pulled image finds it unpacked. The tree stays in the
    snapshotter's ``tmp/`` until the caller adopts it: after the digest is verified
    here and the config's diff_id matches (``unpack_layers``).

    ``desc.size`` of -1 (schema 1) means unknown: only the digest is checked.
    """
    expected = desc if desc.size >= 0 else None
    compression = mt.layer_compression(desc.media_type)
    unpacking = staged is not None and layer
    hasher = _TarHasher(compression, hash_tar=measure_diff_id) if layer and not unpacking else None
    inflate = hasher is not None and (measure_diff_id or compression != "none")
    third: _Stage = (
        _PipeStage(staged.apply, "kiln-unpack")
        if unpacking and staged is not None
        else _Stage(hasher.feed if inflate and hasher is not None else None, "kiln-inflate")
    )
    kept = bytearray() if keep else None
    tries = client.options.tries
    breaks = 0
    with (
        store.ingest("", expected) as ing,
        _Stage(_writing_back(ing), "kiln-ingest", ing.offset) as writer,
        third as inflater,
    ):
        while True:
            reader = client.open_blob(ref, desc.digest, offset=writer.received)
            try:
                with reader:
                    for chunk in _batches(reader):
                        writer.put(chunk)  # written and hashed on the writer thread
                        inflater.put(chunk)  # inflated and measured on the third
                        if kept is not None:
                            kept += chunk
                        if on_bytes is not None:
                            on_bytes(writer.received)
                break
            except Unavailable:
                breaks += 1
                if breaks >= tries:
                    raise
                client.retry.sleep(client.retry.wait_for(breaks))
        writer.finish()
        inflater.finish(raise_error=not unpacking)  # an unpack error: after the digest
        size = ing.offset
        digest = ing.commit()  # digest and size verified first: a wrong blob keeps nothing
    try:
        if unpacking and staged is not None:
            inflater.finish()  # the right blob, but not a layer the applier takes
            if staged.result is None:
                raise InvalidArgument(f"layer {desc.digest} was not unpacked")
            diff_id, usize = str(staged.result.diff_id), staged.result.size
        elif hasher is None:
            diff_id, usize = "", 0
        elif inflate:
            diff_id, usize = hasher.result()
        else:  # an uncompressed layer: the blob is the tar
            diff_id, usize = "", size
    except BaseException:
        store.delete_blobs_if_unreferenced([digest], except_leases=store.leases.open())
        raise
    return Fetched(
        desc.replace(size=size), diff_id, usize, bytes(kept) if kept is not None else None
    )


def _writing_back(ing: Ingest) -> Callable[[bytes], None]:
    """``ing.write``, starting the blob's writeback every 8 MiB: the disk writes while the
    blob arrives, and the fsync at commit finds little left to write."""
    pacer = WritebackEvery(ing.fd)

    def write(chunk: bytes) -> None:
        ing.write(chunk)
        pacer.wrote(len(chunk))

    return write


def _batches(reader: BlobReader, size: int = READ_SIZE) -> Iterator[bytes]:
    """The stream in pieces of about ``size`` bytes: few enough hand-overs between the
    threads, small enough to keep memory flat. Network chunks are passed on uncopied
    when the reader can (``iter_chunks``)."""
    chunks = getattr(reader, "iter_chunks", None)
    source = chunks() if chunks is not None else iter(lambda: reader.read(256 * 1024), b"")
    parts: list[bytes] = []
    have = 0
    for data in source:
        parts.append(data)
        have += len(data)
        if have >= size:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, have = [], 0
    if parts:
        yield b"".join(parts)


class _Stage:
    """Runs ``work(chunk)`` on its own thread for every chunk ``put``, in order; a bounded
    queue keeps memory flat. ``work=None`` is a stage that does nothing."""

    def __init__(self, work: Callable[[bytes], object] | None, name: str, received: int = 0):
        self.work = work
        self.received = received
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)  # None: the end
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if work is not None:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is None and self.work is not None:
                try:
                    self.work(chunk)
                except BaseException as exc:
                    self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is not None:
            self._queue.put(chunk)
        self.received += len(chunk)

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self, raise_error: bool = True) -> None:
        """Wait for every chunk to be handled; raise what the thread hit."""
        self._stop()
        if self._error is not None and raise_error:
            raise self._error

    def __enter__(self) -> _Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


class _PipeStage(_Stage):
    """Runs ``consume(reader)`` once on its own thread; ``reader`` reads the chunks ``put``
    here, in order, and ends when the stage finishes. What ``consume`` leaves unread is
    drained, so the producer never blocks on a stage that stopped early or failed."""

    def __init__(self, consume: Callable[[ByteReader], object], name: str):
        self._consume = consume
        self._rest = b""
        self._pos = 0
        self._ended = False
        super().__init__(lambda chunk: None, name)

    def _run(self) -> None:
        try:
            self._consume(self)
        except BaseException as exc:
            self._error = exc
        while not self._ended:  # drain: put() must never block on a dead consumer
            self._ended = self._queue.get() is None

    def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` over; the consumer's error waits for ``finish`` (the blob's digest
        is checked first: a wrong blob is a digest mismatch, not a broken layer)."""
        self._queue.put(chunk)
        self.received += len(chunk)

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of what was put (the rest of a chunk for -1); b"" at the end."""
        while self._pos >= len(self._rest) and not self._ended:
            chunk = self._queue.get()
            if chunk is None:
                self._ended = True
            else:
                self._rest, self._pos = chunk, 0
        start = self._pos
        end = len(self._rest) if size < 0 else min(len(self._rest), start + size)
        self._pos = end
        if start == 0 and end == len(self._rest):
            return self._rest
        return self._rest[start:end]


# -- a whole image ---------------------------------------------------------------------------


class _Pull:
    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        store: Store,
        lease: Lease | None,
        progress: Progress | None,
        workers: int,
        snaps: Snapshotter | None = None,
    ) -> None:
        self.client, self.ref, self.store, self.lease = client, ref, store, lease
        self.progress: Progress = progress or (lambda *a: None)
        self.workers = max(1, workers)
        self.snaps = snaps  # a Snapshotter: layers are unpacked as they arrive
        self._lock = threading.Lock()
        self._failed = threading.Event()  # one blob failed: the others stop early
        self.new: list[Digest] = []  # blobs this pull added: removed again if it fails
        self.staged: dict[str, StagedLayer] = {}  # blob digest -> its unpacked tree

    def discard_staged(self) -> None:
        """Drop the unpacked trees no layer took (all of them when the pull failed)."""
        discard_staged(self.staged, self._lock)

    def forget_new(self) -> None:
        """Remove the blobs this pull added, except any that another image or lease
        (a concurrent pull that found them present) has come to rely on."""
        self.store.delete_blobs_if_unreferenced(
            self.new, except_leases=[self.lease, *self.store.leases.open()]
        )

    @contextlib.contextmanager
    def _stopping_on_interrupt(self, stop: CancelFlag) -> Iterator[None]:
        """While the blobs are fetched: a Ctrl-C (KeyboardInterrupt in this thread), or any
        error here, stops every fetch at its next chunk, or within a read slice where the
        registry has stalled mid-blob (``stop``: the pool threads' cancel flag), so the
        pool's exit (entered before this) does not wait for whole blobs or read timeouts."""
        try:
            yield
        except BaseException as exc:
            self._failed.set()
            stop.set_for("interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped")
            raise

    def _bytes(self, kind: str, desc: Descriptor, n: int) -> None:
        if self._failed.is_set():
            raise Cancelled(f"fetching {desc.digest} stopped: another blob failed")
        self._report(kind, desc, n, "bytes")

    def _report(self, kind: str, desc: Descriptor, done: int, state: str) -> None:
        with self._lock:
            self.progress(kind, desc, done, state)

    def _blob(
        self, desc: Descriptor, *, layer: bool, measure: bool = False, keep: bool = False
    ) -> Fetched:
        kind = "blob" if layer else "config"
        self._report(kind, desc, 0, "start")
        staged = None
        try:
            if layer and self.snaps is not None and not measure:
                staged = self.snaps.stage_layer(lambda s: self._keep_staged(desc, s))
            res = fetch_blob(  # the blob joins the lease as it is published
                self.client,
                self.ref,
                self.store,
                desc,
                layer=layer,
                measure_diff_id=measure,
                on_bytes=lambda n: self._bytes(kind, desc, n),
                keep=keep,
                staged=staged,
            )
        except BaseException:
            self._failed.set()
            raise
        with self._lock:
            self.new.append(res.desc.digest)
        self._report(kind, res.desc, res.desc.size, "done")
        return res

    def _keep_staged(self, desc: Descriptor, staged: StagedLayer) -> None:
        with self._lock:  # the pool's threads add theirs too
            self.staged[str(desc.digest)] = staged

    def _config(self, desc: Descriptor) -> ImageConfig:
        if self.store.lease_existing_blob(desc.digest, self.lease):
            self._report("config", desc, desc.size, "skipped")
            with self.store.open_blob(desc.digest) as f:
                return ImageConfig.parse(f.read(MAX_CONFIG_BYTES + 1))
        if desc.size > MAX_CONFIG_BYTES:
            raise InvalidArgument(f"image config {desc.digest} is over the size limit")
        return ImageConfig.parse(self._blob(desc, layer=False, keep=True).data or b"")

    def schema2(self, manifest: Manifest, names: Sequence[str]) -> ImageRecord:
        sizes: dict[Digest, int] = {}
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kiln-pull")
        with cancel_scope() as stop, pool, self._stopping_on_interrupt(stop):
            config_f = pool.submit(contextvars.copy_context().run, self._config, manifest.config)
            futures: dict[Digest, Future[Fetched]] = {}
            for desc in manifest.layers:
                if desc.digest in futures:
                    continue
                # present: kept (leased) in the same step, so no GC can sweep it before
                # register_image
                if self.store.lease_existing_blob(desc.digest, self.lease):
                    self._report("blob", desc, desc.size, "skipped")
                    continue
                futures[desc.digest] = pool.submit(
                    contextvars.copy_context().run, self._blob, desc, layer=True
                )
            config = _first_error(config_f, futures.values())
            for digest, fut in futures.items():
                sizes[digest] = fut.result().uncompressed_size
        if self.snaps is not None:  # every blob verified: the config vouches for the trees
            unpack_stored(self.store, self.snaps, manifest, config, self.staged)
        return register_image(self.store, manifest, config, names, sizes, self.lease)

    def schema1(self, s1: Schema1Manifest, names: Sequence[str]) -> ImageRecord:
        """Fetch the layers, measure their diff IDs, synthesize config and a v2s2 manifest."""
        unique = list(dict.fromkeys(s1.layer_digests))
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kiln-pull")
        with cancel_scope() as stop, pool, self._stopping_on_interrupt(stop):
            futures = {
                d: pool.submit(
                    contextvars.copy_context().run,
                    self._blob,
                    Descriptor(mt.DOCKER_LAYER_GZIP, d, -1),
                    layer=True,
                    measure=True,
                )
                for d in unique
            }
            _wait_all(list(futures.values()))
            fetched = {d: f.result() for d, f in futures.items()}
        layers = [fetched[d].desc for d in s1.layer_digests]
        config = s1.to_config([fetched[d].diff_id for d in s1.layer_digests])
        raw = config.to_bytes()
        config_desc = Descriptor(mt.DOCKER_CONFIG, Digest.of_bytes(raw), len(raw))
        self.store.put_blob(config_desc, io.BytesIO(raw))
        manifest = Manifest.build(mt.DOCKER_MANIFEST, config_desc, layers)
        sizes = {d: f.uncompressed_size for d, f in fetched.items()}
        return register_image(self.store, manifest, config, names, sizes, self.lease)


class _Outcome(Protocol):
    """A finished or running task (a ``Future`` of any result)."""

    def exception(self, timeout: float | None = None) -> BaseException | None: ...


def _wait_all(futures: Sequence[_Outcome]) -> None:
    """Wait for every future; raise the first real failure (not a knock-on cancel)."""
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    if errors:
        raise (real or errors)[0]


def _first_error(config_f: Future[ImageConfig], layer_fs: Iterable[Future[Fetched]]) -> ImageConfig:
    _wait_all([config_f, *layer_fs])
    return config_f.result()


def pull_into_store(
    client: RegistryClient,
    remote: RemoteImage,
    store: Store,
    names: Sequence[str] = (),
    *,
    lease: Lease | None = None,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
    snaps: Snapshotter | None = None,
) -> ImageRecord:
    """Fetch ``remote`` into ``store`` (skipping blobs present) and register it as ``names``.

    Repo digests (``name@digest`` of the manifest and of the index, if any) are
    recorded. Blobs join ``lease`` as they arrive; if the pull fails, the blobs it
    added are removed again, so the store is left as it was.

    ``snaps`` (a Snapshotter): each layer is unpacked while it arrives, on the
    thread that would inflate it anyway, into a staged tree nothing can use; once
    every blob's digest is verified and the config's diff_ids match, the trees are
    made durable and recorded bottom up (layers already in the store are unpacked
    from it), before the image is registered. A diff_id mismatch fails the pull
    and keeps no tree. Schema 1 images are unpacked on first use.
    """
    job = _Pull(client, remote.ref, store, lease, progress, workers, snaps)
    # ``lease`` current here, and the pull's pools run their tasks in copies of this
    # context: every blob joins it as it is published
    with store.joined(lease):
        return _pull(job, remote, store, names)


def _pull(job: _Pull, remote: RemoteImage, store: Store, names: Sequence[str]) -> ImageRecord:
    try:
        if remote.schema1 is not None:
            record = job.schema1(remote.schema1, names)
        elif remote.manifest is not None:
            record = job.schema2(remote.manifest, names)
        else:
            raise NotFound(f"{remote.ref}: nothing to pull")
    except BaseException:
        job.forget_new()  # the store is left as it was
        raise
    finally:
        job.discard_staged()
    for digest in remote.digests:
        store.add_repo_digest(record.id, f"{remote.ref.name}@{digest}")
    return store.get_image(record.id)


__all__ = [
    "DEFAULT_WORKERS",
    "Fetched",
    "RegistryBlobs",
    "RemoteImage",
    "fetch_blob",
    "pull_into_store",
    "resolve_remote",
]
