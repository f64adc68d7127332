"""Commit a working container: its changes become one new layer on its image's layers.

The layer is the overlay upper dir (whiteouts for deletions, opaque directories), or with
``squash`` the whole merged tree as the only layer. It is written by
``archive.tar_writer.write_layer`` straight into an anonymous store ingest (hashed and
compressed in one pass), then config, manifest and image rows are stored under a lease in
one transaction, name included. A failure or a kill before that transaction leaves no
image; a half-written ingest is never visible and a published but unreferenced blob is
garbage GC collects once the lease expires.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kiln.archive.compression import Compression
from kiln.archive.tar_writer import (
    LayerResult,
    scan_changes,
    scan_overlay_upper,
    scan_tree,
    write_layer,
)
from kiln.errors import InvalidArgument
from kiln.oci import Descriptor, Digest, History, ImageConfig
from kiln.oci import media_types as mt
from kiln.oci.reference import local_name
from kiln.store import ImageRecord
from kiln.util.atomic import WritebackEvery
from kiln.util.timefmt import rfc3339

from .config_edit import ConfigEditor

if TYPE_CHECKING:
    from .builder import Builder

DEFAULT_CREATED_BY = "/bin/sh"
COMPRESSIONS = ("gzip", "zstd", "none")
#: the most layers a committed image may have: the most some storage drivers stack (the
#: overlay mount data of older kernels and tools is one page); Docker's layer store takes
#: 125 image layers (127 less the two of a container), buildah makes more
MAX_LAYERS = 127


class _IngestWriter(io.RawIOBase):
    """A file-like front of a store ingest for ``write_layer``: a ``HashingSink`` (the
    ingest hashes what it writes, so ``write_layer`` takes the blob digest from it). The
    blob's writeback starts every 8 MiB, so its fsync at the end finds little left."""

    def __init__(self, ingest: Any):
        self.ingest = ingest
        self._writeback = WritebackEvery(ingest.fd)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.ingest.write(data)
        self._writeback.wrote(len(data))
        return len(data)

    @property
    def digest(self) -> str:
        return str(self.ingest.digest())

    @property
    def size(self) -> int:
        return self.ingest.offset


def _compression(name: str, image_format: str) -> Compression:
    if name not in COMPRESSIONS:
        raise InvalidArgument(f"--compression {name!r} is invalid: use gzip, zstd or none")
    if image_format == "docker" and name == "zstd":
        raise InvalidArgument("zstd layers need --format oci (Docker images carry gzip or none)")
    return Compression(name)


def write_layer_blob(store: Any, entries: Iterable[Any], compression: Compression,
                     timestamp: int | None) -> tuple[LayerResult, Any]:  # fmt: skip
    """Stream ``entries`` as a layer into an anonymous store ingest, sealed (verified) but
    not yet published: ``store.publish`` makes it visible with the image's other blobs.
    The caller closes the ingest (``publish`` finishes it; closing first drops it)."""
    ing = store.ingest("")
    try:
        result = write_layer(entries, _IngestWriter(ing), compression=compression,
                             timestamp=timestamp)  # fmt: skip
        digest = ing.seal()
        if str(digest) != str(result.digest):
            raise InvalidArgument(f"layer digest mismatch: wrote {result.digest}, stored {digest}")
    except BaseException:
        ing.close()
        raise
    return result, ing


def change_entries(b: Builder) -> Iterator[Any]:
    """The container's changes as layer entries (overlay upper, streamed; or a two-tree
    scan for copies)."""
    if not b.is_copy_snapshot():
        return scan_overlay_upper(b.upper_dir())
    with b.base_view() as lower:
        return iter(list(scan_changes(lower, b.upper_dir())))


def _nonempty(entries: Iterator[Any]) -> Iterator[Any] | None:
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


def commit_builder(
    b: Builder,
    name: str | None = None,
    *,
    format: str | None = None,  # noqa: A002 - the documented keyword
    timestamp: int | None = None,
    squash: bool = False,
    compression: str = "gzip",
    omit_history: bool = False,
    changes: Sequence[str] = (),
    created_by: str | None = None,
    history_comment: str | None = None,
    rm: bool = False,
    history_entry: bool = True,
    force_layer: bool = False,
) -> ImageRecord:
    """Write ``b`` as a new image (named ``name`` if given); returns its record.

    ``history_entry=False``: add no history entry of its own when no layer is added (a
    build's final stage that only names its base, as buildah and BuildKit record it).
    ``force_layer``: add a layer even when nothing changed (a build's RUN/COPY/ADD step:
    buildah and BuildKit commit an empty layer for a step that changes no file)."""
    from kiln.image import open_store_image
    from kiln.image.store_image import image_rows, record_image

    image_format = format or b.state.format
    if image_format not in ("oci", "docker"):
        raise InvalidArgument(f"--format {image_format!r} is invalid: use oci or docker")
    comp = _compression(compression, image_format)
    if timestamp is not None and timestamp < 0:
        raise InvalidArgument("--timestamp must be seconds since the epoch, not negative")
    from kiln.image.changes import apply_changes

    editor = ConfigEditor(b.config.image, b.config.annotations)
    if changes:
        editor.image = editor.image.evolve(config=apply_changes(editor.runtime, list(changes)))
    store = b.store
    base = (
        None if (b.state.image_id is None or squash) else open_store_image(store, b.state.image_id)
    )
    base_layers = list(base.layers) if base is not None else []

    created = rfc3339(timestamp)
    # a build's step joins the build's lease (every blob published joins the thread's
    # leases); alone (kiln commit) the commit holds one of its own
    current = store.current_lease()
    held = contextlib.nullcontext(current) if current is not None else store.lease()
    with held as lease, contextlib.ExitStack() as unpublished:
        layer_ing = None
        if squash:
            with b.mounted() as rootfs:
                layer, layer_ing = write_layer_blob(store, scan_tree(rootfs), comp, timestamp)
        else:
            entries = _nonempty(change_entries(b))
            layer = None
            if entries is not None or not base_layers or force_layer:
                check_layer_count(len(base_layers) + 1)
                layer, layer_ing = write_layer_blob(store, entries or iter(()), comp, timestamp)
        if layer_ing is not None:
            unpublished.callback(layer_ing.close)
        descs = [
            d.replace(media_type=mt.convert_layer_media_type(d.media_type, image_format))
            for d in base_layers
        ]
        diff_ids = list(base.config.diff_ids) if base is not None else []
        sizes: dict[Digest, int] = {}
        if layer is not None:
            digest = Digest.parse(str(layer.digest))
            descs.append(
                Descriptor(mt.layer_media_type(image_format, comp.value), digest, layer.size)
            )
            diff_ids.append(layer.diff_id)
            sizes[digest] = layer.uncompressed_size
        history: list[History] = []
        if not omit_history:
            if base is not None:
                history = _base_history(editor.image, len(base_layers))
            pending = [
                replace(h, created=created) if timestamp is not None or not h.created else h
                for h in b.state.history
            ]
            comment = b.state.history_comment if history_comment is None else history_comment
            entry = History(
                created=created,
                created_by=created_by or b.state.created_by or DEFAULT_CREATED_BY,
                author=editor.image.author,
                comment=comment,
                empty_layer=layer is None,
            )
            history += [*pending, entry] if history_entry or layer is not None else pending
        config = editor.image.evolve(
            created=created, diff_ids=tuple(diff_ids), history=tuple(history)
        )
        raw = config.to_bytes()
        config_desc = Descriptor(mt.config_type_for(image_format), Digest.of_bytes(raw), len(raw))
        annotations = editor.annotations if image_format == "oci" else None
        from kiln.oci import Manifest

        manifest = Manifest.build(mt.manifest_type_for(image_format), config_desc, descs,
                                  annotations)  # fmt: skip
        parsed = ImageConfig.parse(raw)
        layer_rows, record = image_rows(store, manifest, parsed, sizes)
        config_ing = store.sealed_bytes(config_desc, raw)
        manifest_ing = store.sealed_bytes(manifest.descriptor(), manifest.raw)
        for ing in (config_ing, manifest_ing):
            if ing is not None:
                unpublished.callback(ing.close)
        names = [local_name(name)] if name else []
        # the three blobs are fsynced together and become visible in the transaction
        # that records the image
        store.publish(
            [layer_ing, config_ing, manifest_ing],
            then=lambda: record_image(store, layer_rows, record, names, lease),
        )
    if rm:
        b.delete()
    return store.get_image(record.id)
