"""``kiln import``: a root filesystem tarball becomes a one-layer image.

The tarball (any compression: none, gzip, zstd, bzip2, xz) is decompressed,
its tar bytes hashed (the diff_id) and compressed again (gzip via isal by
default) straight into the store, in one pass; its content is kept as is.
``--change`` instructions set the runtime config; the history entry carries
the message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from kiln.archive.tar_check import check_tar
from kiln.errors import InvalidArgument
from kiln.image.changes import apply_changes
from kiln.image.layers import recompress
from kiln.image.store_image import NewLayer, write_image
from kiln.oci.config import DEFAULT_PATH, History, ImageConfig, RuntimeConfig
from kiln.oci.platform import Platform
from kiln.store import ImageRecord, Store
from kiln.util.choices import Compression
from kiln.util.timefmt import rfc3339

if TYPE_CHECKING:
    from kiln.store.ingest import Ingest
    from kiln.store.leases import Lease


class _IngestWriter:
    """A file-like face for a store ingest (write + flush)."""

    def __init__(self, ingest: Ingest):
        self._ingest = ingest

    def write(self, data: bytes | memoryview) -> int:
        self._ingest.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


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
) -> ImageRecord:
    """Store ``stream`` (a tarball) as a one-layer image; returns its record, named ``names``."""
    compression = Compression.parse(compression)
    platform = platform or Platform.host()
    created = rfc3339(time.time() if timestamp is None else timestamp)
    runtime = apply_changes(RuntimeConfig(env=(f"PATH={DEFAULT_PATH}",)), list(changes))
    with store.lease() as own:
        holder = lease or own
        with store.ingest("") as ing:
            try:
                res = recompress(stream, _IngestWriter(ing), compression, check=check_tar)
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
        history = History(
            created=created,
            created_by="",
            comment=message or f"Imported from {source}",
        )
        config = ImageConfig(
            created=created,
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            config=runtime,
        )
        record = write_image(
            store, None, [NewLayer(res, history)], config, image_format, lease=holder
        )
        for name in names:
            store.tag(name, record.id)
    return store.get_image(record.id) if names else record
