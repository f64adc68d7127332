"""Commit a working container: its changes become one new layer on its image's layers.

The layer is the overlay upper dir (whiteouts for deletions, opaque directories), or with
``squash`` the whole merged tree as the only layer. It is written by
``archive.tar_writer.write_layer`` straight into an anonymous store ingest (hashed and
compressed in one pass), then config, manifest and image rows are stored under a lease in
one transaction, name included. A failure or a kill before that transaction leaves no
image; a half-written ingest is never visible and a published but unreferenced blob is
garbage GC collects once the lease expires.

A build commits every RUN/COPY/ADD step and goes on from the new image without copying
or unpacking (``Builder.commit_step``): the upper dir is adopted as the new layer's
snapshot (``Snapshotter.commit``: a rename) under a new, empty upper, its times first made
those its layer holds (``settled``), as anywhere the image is unpacked. Only the blobs and
the image rows written here wait for the disk: the adopted tree, written without syncs,
is recorded as not yet durable with the boot id (``commit(synced=False)``) and is unpacked
again from its durable blob if another boot finds it.

This module writes images; the ``Builder`` owns the container's state and snapshot and
calls in here (it is never imported from here: ``Builder.commit`` hands over the pieces).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol

from kiln.archive.compression import Compression
from kiln.archive.entry import TarEntry, clean_path, tar_mtime
from kiln.archive.scan import scan_changes, scan_overlay_upper, scan_tree
from kiln.archive.tar_writer import ContentSeen, LayerResult, write_layer
from kiln.errors import InvalidArgument
from kiln.image import open_store_image
from kiln.image.mutate import Addendum, append_layers
from kiln.image.store_image import IngestWriter, StoreImage, image_rows, record_image
from kiln.oci import Descriptor, Digest, History, ImageConfig
from kiln.oci import media_types as mt
from kiln.oci.reference import local_name
from kiln.store import ImageRecord, Store
from kiln.util import choices
from kiln.util.inroot import InRoot
from kiln.util.lazy_dataclass import dataclass
from kiln.util.timefmt import rfc3339

from .config_edit import ConfigEditor

DEFAULT_CREATED_BY = "/bin/sh"
COMPRESSIONS = choices.COMPRESSIONS
#: the most layers a committed image may have: the most some storage drivers stack (the
#: overlay mount data of older kernels and tools is one page); Docker's layer store takes
#: 125 image layers (127 less the two of a container), buildah makes more
MAX_LAYERS = 127


@dataclass(frozen=True)
class CommitOptions:
    """How a commit writes its image (``Builder.commit``'s keywords); checked when made, so
    a bad value is refused before anything is mounted or written.

    ``history_entry=False``: add no history entry of its own when no layer is added (a
    build's final stage that only names its base, as buildah and BuildKit record it).
    ``force_layer``: add a layer even when nothing changed (a build's RUN/COPY/ADD step:
    buildah and BuildKit commit an empty layer for a step that changes no file)."""

    image_format: str = "oci"
    compression: str = "gzip"
    timestamp: int | None = None
    squash: bool = False
    omit_history: bool = False
    changes: tuple[str, ...] = ()
    created_by: str | None = None
    history_comment: str | None = None
    history_entry: bool = True
    force_layer: bool = False

    def __post_init__(self) -> None:
        # the one check and wording of ``kiln.util.choices``; the spelling is normalised
        # (``v2s2``, ``uncompressed``, any case) so the commit reads only canonical words
        object.__setattr__(self, "image_format", choices.ImageFormat.parse(self.image_format))
        object.__setattr__(self, "compression", choices.Compression.parse(self.compression))
        if self.image_format == "docker" and self.compression == "zstd":
            raise InvalidArgument(
                "zstd layers need --format oci (Docker images carry gzip or none)"
            )
        if self.timestamp is not None and self.timestamp < 0:
            raise InvalidArgument("--timestamp must be seconds since the epoch, not negative")


@dataclass(frozen=True)
class Pending:
    """What a working container brings to its commit besides its files: the image it sits
    on (None: scratch), its config and annotations, the history entries of its steps since
    the last commit, and what the commit's own entry says unless the options say otherwise
    (``kiln config --created-by``, ``--history-comment``)."""

    base_id: str | None
    config: ConfigEditor
    history: Sequence[History] = ()
    created_by: str = ""
    history_comment: str = ""
    #: the base image already in memory (a build's previous step), else read from the store
    base: StoreImage | None = None


class Filesystem(Protocol):
    """The views of a working container's files a commit reads (``Builder`` has them)."""

    def is_copy_snapshot(self) -> bool: ...

    def upper_dir(self) -> str: ...

    def base_view(self) -> AbstractContextManager[str]: ...

    def mounted(self) -> AbstractContextManager[str]: ...


@contextlib.contextmanager
def layer_changes(fs: Filesystem, *, squash: bool) -> Iterator[Iterator[Any] | None]:
    """The entries of the layer a commit adds, None when nothing changed: the overlay upper
    (streamed), a two-tree scan for a copy snapshot, or with ``squash`` the whole merged
    tree (mounted for the block)."""
    if squash:
        with fs.mounted() as rootfs:
            yield scan_tree(rootfs)
        return
    if not fs.is_copy_snapshot():
        yield nonempty(scan_overlay_upper(fs.upper_dir()))
        return
    with fs.base_view() as lower:
        entries = list(scan_changes(lower, fs.upper_dir()))
    yield nonempty(iter(entries))


def write_layer_blob(store: Any, entries: Iterator[Any], compression: Compression,
                     timestamp: int | None, on_content: ContentSeen | None = None,
                     on_bytes: Callable[[int], None] | None = None,
                     ) -> tuple[LayerResult, Any]:  # fmt: skip
    """Stream ``entries`` as a layer into an anonymous store ingest, sealed (verified) but
    not yet published: ``store.publish`` makes it visible with the image's other blobs.
    The caller closes the ingest (``publish`` finishes it; closing first drops it).
    ``on_content``: as ``write_layer``'s (each file's content digest, from the same read).
    ``on_bytes(n)``: the blob's bytes written so far, after every write (progress)."""
    ing = store.ingest("")
    try:
        blob = IngestWriter(ing, writeback=True, on_write=on_bytes)
        result = write_layer(entries, blob, compression=compression, timestamp=timestamp,
                             on_content=on_content)  # fmt: skip
        digest = ing.seal()
        if str(digest) != str(result.digest):
            raise InvalidArgument(f"layer digest mismatch: wrote {result.digest}, stored {digest}")
    except BaseException:
        ing.close()
        raise
    return result, ing


def settled(root: str, entries: Iterator[TarEntry], timestamp: int | None) -> Iterator[TarEntry]:
    """``entries`` (scanned from ``root``, to be written as a layer with ``timestamp``),
    each given, once the writer has taken the next (it is written), the mtime the layer
    holds for it (``tar_mtime``: whole seconds, or the timestamp), and that as its atime.

    A build step's upper, adopted as the layer's snapshot, has the times its writers left
    (the clock, in nanoseconds): settled, the next step, a container of the image and
    ``kiln export`` see what they see of the same image pulled or loaded elsewhere, and
    what they make of those times (an archive, a compiled file) is reproducible too. Done
    as the layer is written: no second walk of the tree, nothing held."""
    with InRoot.opened(root) as tree, _Parents(tree) as parents:
        for entry in entries:
            yield entry
            if entry.type in ("whiteout", "opaque"):
                continue  # overlay's marks, not files of the tree
            ns = tar_mtime(entry, timestamp) * 1_000_000_000
            if entry.mtime == ns:
                continue
            rel = clean_path(entry.path)
            if not rel:
                os.utime(root, ns=(ns, ns))  # kiln's own directory
                continue
            where, _, name = rel.rpartition("/")
            os.utime(name, ns=(ns, ns), dir_fd=parents.fd(where), follow_symlinks=False)


class _Parents:
    """The O_PATH fd of the directory the last entry was in, resolved in-root, kept while
    entries stay in it (most follow a sibling: one resolution a directory)."""

    def __init__(self, tree: InRoot):
        self.tree = tree
        self.where: str | None = None
        self.held: list[int] = []  # its fd, opened straight into it (``util.owned_open``)

    def fd(self, where: str) -> int:
        if where != self.where:
            self.close()
            self.tree.open_into(self.held, where, os.O_PATH | os.O_DIRECTORY)
            self.where = where
        return self.held[0]

    def close(self) -> None:
        self.where = None
        if self.held:
            fd = self.held[0]
            del self.held[:]  # no call between this and the close: no point a signal lands at
            os.close(fd)

    def __enter__(self) -> _Parents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def nonempty(entries: Iterator[Any]) -> Iterator[Any] | None:
    """``entries`` whole, or None if there are none (one entry read ahead)."""
    first = next(entries, None)
    return None if first is None else itertools.chain([first], entries)


def check_layer_count(count: int) -> None:
    """Refuse, before anything is written, an image that would have more than MAX_LAYERS."""
    if count > MAX_LAYERS:
        raise InvalidArgument(
            f"the image would have {count} layers, more than the {MAX_LAYERS} an image may "
            "have (Docker and some storage drivers cannot use more): squash it (--squash) "
            "or make fewer layers (fewer or joined RUN, COPY and ADD steps)"
        )


def _base_history(config: ImageConfig, layer_count: int) -> list[History]:
    """The base's history, padded so its non-empty entries match its layers."""
    history = list(config.history)
    missing = layer_count - len([h for h in history if not h.empty_layer])
    if history and missing > 0:
        history = [History() for _ in range(missing)] + history
    return history


@contextlib.contextmanager
def joined_lease(store: Store) -> Iterator[Any]:
    """The lease a write joins: a build's (every blob published joins the thread's
    leases), or alone (``kiln commit``) one of its own, held for the block."""
    current = store.current_lease()
    if current is not None:
        yield current
        return
    with store.lease() as own:
        yield own


def commit_image(
    store: Store, changes: Iterator[Any] | None, pending: Pending, opts: CommitOptions,
    name: str | None = None, also: Callable[[ImageRecord, ImageConfig], None] | None = None,
    written: tuple[LayerResult, Any] | None = None, on_bytes: Callable[[int], None] | None = None,
) -> StoreImage:  # fmt: skip
    """Write ``changes`` (layer entries; None when nothing changed) as a new layer on
    ``pending.base_id`` with ``pending``'s config and history; name it ``name`` if given.
    With ``opts.squash``, ``changes`` is the whole tree and the image has no base.
    ``also(record, config)`` writes what refers to the new image (a build step's container
    and cache entry) in the transaction that records it: one write, visible together.
    ``written``: the new layer already written (``write_layer_blob``'s result and sealed
    ingest, which this call then owns), instead of ``changes``. ``on_bytes(n)``: the new
    layer's bytes written so far (progress).

    Returns the new image in memory (record, manifest and config), for the next step to
    build on: its config is parsed once, here, and its rows cost the same statements
    whatever the depth of the image."""
    editor = ConfigEditor(pending.config.image, pending.config.annotations)
    if opts.changes:
        # start-up: --change values only for kiln commit
        from kiln.image.changes import apply_changes

        editor.image = editor.image.evolve(config=apply_changes(editor.runtime, opts.changes))
    base_id = None if opts.squash else pending.base_id
    base: StoreImage | None = None
    if base_id is not None:
        known = pending.base
        base = (
            known if known is not None and known.id == base_id else open_store_image(store, base_id)
        )
    base_layers = list(base.layers) if base is not None else []
    image_format = opts.image_format
    comp = Compression(opts.compression)
    created = rfc3339(opts.timestamp)
    with joined_lease(store) as lease, contextlib.ExitStack() as unpublished:
        layer = layer_ing = None
        if written is not None:
            layer, layer_ing = written
            unpublished.callback(layer_ing.close)
            check_layer_count(len(base_layers) + 1)
        elif changes is not None or not base_layers or opts.force_layer or opts.squash:
            check_layer_count(len(base_layers) + 1)
            layer, layer_ing = write_layer_blob(store, changes or iter(()), comp, opts.timestamp,
                                                on_bytes=on_bytes)  # fmt: skip
            unpublished.callback(layer_ing.close)
        added: list[Addendum] = []
        sizes: dict[Digest, int] = {}
        if layer is not None:
            digest = Digest.parse(str(layer.digest))
            desc = Descriptor(mt.layer_media_type(image_format, comp.value), digest, layer.size)
            added.append(Addendum(desc, layer.diff_id))
            sizes[digest] = layer.uncompressed_size
        history: list[History] = []
        if not opts.omit_history:
            if base is not None:
                history = _base_history(editor.image, len(base_layers))
            pending_history = [
                replace(h, created=created) if opts.timestamp is not None or not h.created else h
                for h in pending.history
            ]
            comment = opts.history_comment
            entry = History(
                created=created,
                created_by=opts.created_by or pending.created_by or DEFAULT_CREATED_BY,
                author=editor.image.author,
                comment=pending.history_comment if comment is None else comment,
                empty_layer=layer is None,
            )
            own = opts.history_entry or layer is not None
            history += [*pending_history, entry] if own else pending_history
        # the history is whole already (the base's padded, then this commit's entries)
        new = append_layers(base, added, editor.image.evolve(created=created,
                            history=tuple(history)), image_format,
                            annotations=editor.annotations, check_history=False)  # fmt: skip
        raw, manifest = new.config_raw, new.manifest
        config = ImageConfig.parse(raw)  # the step's one parse: what is stored, as read back
        layer_rows, record = image_rows(store, manifest, config, sizes)
        config_ing = store.sealed_bytes(new.config_descriptor, raw)
        manifest_ing = store.sealed_bytes(manifest.descriptor(), manifest.raw)
        for ing in (config_ing, manifest_ing):
            if ing is not None:
                unpublished.callback(ing.close)
        names = [local_name(name)] if name else []

        # the three blobs are fsynced together and become visible in the transaction
        # that records the image
        stored_rec: list[ImageRecord] = []

        def rows() -> None:
            record_image(store, layer_rows, record, names, lease, config)
            if also is not None:
                also(record, config)
            # read in the transaction: another kiln's rmi right after does not fail the commit
            stored_rec.append(store.get_image(record.id))

        store.publish([layer_ing, config_ing, manifest_ing], then=rows)
    return StoreImage(store, stored_rec[0], manifest, config)
