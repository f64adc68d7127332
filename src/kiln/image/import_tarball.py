"""``kiln import``: a root filesystem tarball becomes a one-layer image.

The tarball (any compression: none, gzip, zstd, bzip2, xz) is decompressed,
its tar bytes hashed (the diff_id) and compressed again (gzip via isal by
default) straight into the store, in one pass; its content is kept as is.
``--change`` instructions set the runtime config; the history entry carries
the message.

Given a snapshotter, the same pass also unpacks the tar (as ``docker import`` leaves
its layer in the graph driver, and a pull unpacks while it fetches): the applier reads
the tar bytes on their way to the compressor, checking every member as ``check_tar``
would, into a staged tree (``Snapshotter.stage_layer``) that is recorded, not yet
durable, only once the blob is stored; a refused tarball keeps neither blob nor tree.
A first build on the image then finds its layer unpacked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from kiln.archive.compression import Compression as TarCompression
from kiln.errors import InvalidArgument
from kiln.image.model import chain_ids
from kiln.image.store_image import IngestWriter, NewLayer, write_image
from kiln.oci.config import DEFAULT_PATH, History, ImageConfig, RuntimeConfig
from kiln.oci.platform import Platform
from kiln.store import ImageRecord, Store
from kiln.util.choices import Compression
from kiln.util.timefmt import rfc3339

if TYPE_CHECKING:
    from kiln.archive.streams import ByteReader
    from kiln.snapshot import Snapshotter
    from kiln.snapshot.staged import StagedLayer
    from kiln.store.leases import Lease


def _applier(staged: StagedLayer) -> Callable[[ByteReader], object]:
    """A ``recompress`` check that unpacks the tar into ``staged`` as it passes, refusing
    what ``check_tar`` refuses (the stream is the tar itself: never inflated again)."""

    # start-up: kiln.image binds import_tarball at its import (every build imports it)
    from kiln.archive.tar_check import member_check

    def apply(tar: ByteReader) -> object:
        return staged.apply(tar, compression=TarCompression.NONE, on_entry=member_check())

    return apply


def import_tarball(
    store: Store,
    stream: BinaryIO,
    changes: Sequence[str] = (),
    message: str = "",
    *,
    source: str = "-",
    platform: Platform | None = None,
    image_format: str = "oci",
    compression: str = "gzip",
    timestamp: float | None = None,
    names: Sequence[str] = (),
    lease: Lease | None = None,
    snaps: Snapshotter | None = None,
    path_env: bool = True,
    podman_history: bool = False,
) -> ImageRecord:
    """Store ``stream`` (a tarball) as a one-layer image; returns its record, named ``names``.

    ``snaps`` (a Snapshotter): unpack the layer in the same pass (see the module
    docstring); None leaves it to the first use. ``path_env``: the config starts with
    ``PATH`` set (dockerd's and podman 4.3's set no environment). ``podman_history``: the
    layer's history entry as podman's import writes it (an ``ADD file:<diff id>``, and
    "imported from tarball" without a message); dockerd's otherwise."""
    # start-up: kiln.image binds this function at its import (every build imports it)
    from kiln.archive.tar_check import check_tar
    from kiln.image.changes import apply_changes
    from kiln.image.layers import recompress

    compression = Compression.parse(compression)
    platform = platform or Platform.host()
    created = rfc3339(time.time() if timestamp is None else timestamp)
    env = (f"PATH={DEFAULT_PATH}",) if path_env else ()
    runtime = apply_changes(RuntimeConfig(env=env), list(changes))
    with store.lease() as own, contextlib.ExitStack() as undo:
        holder = lease or own
        staged = None  # discarded at the end unless adopted (nothing once it is)
        if snaps is not None:
            staged = snaps.stage_layer(lambda s: undo.callback(s.discard))
        check = check_tar if staged is None else _applier(staged)
        with store.ingest("") as ing:
            try:
                res = recompress(stream, IngestWriter(ing), compression, check=check)
            except InvalidArgument as exc:
                raise InvalidArgument(f"cannot import {source}: {exc}") from None
            digest = ing.commit()
        holder.add_blob(digest)
        if str(digest) != res.digest:
            raise InvalidArgument(
                f"layer digest changed while importing ({digest} != {res.digest})"
            )
        if res.uncompressed_size == 0:
            raise InvalidArgument("the tarball is empty; nothing to import")
        if podman_history:
            history = History(
                created=created,
                created_by=f"/bin/sh -c #(nop) ADD file:{str(res.diff_id).removeprefix('sha256:')} in /",
                comment=message or "imported from tarball",
            )
        else:
            history = History(
                created=created, created_by="", comment=message or f"Imported from {source}"
            )
        config = ImageConfig(
            created=created,
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            config=runtime,
        )
        record = write_image(
            store, None, [NewLayer(res, history)], config, image_format, lease=holder,
            names=names,
        )  # fmt: skip
        if snaps is not None and staged is not None:  # the image is in: the tree is its layer's
            [chain_id] = chain_ids([res.diff_id])
            snaps.adopt_staged([(staged, chain_id, None, res.diff_id)])
    return record  # as written: another kiln's rmi since then does not undo the import
