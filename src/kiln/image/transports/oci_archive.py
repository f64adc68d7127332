"""The ``oci-archive:PATH[:REF]`` transport: an OCI image layout in a tar file.

Source: read in place, by member offsets (:class:`kiln.store.oci_layout.OCIArchive`).
Sink: a deterministic tar streamed to its file or to a stream
(:class:`kiln.store.oci_layout.OCIArchiveWriter`); the file appears only when complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from kiln.image.model import SourceImage, open_image
from kiln.image.transport_names import OCI_ARCHIVE
from kiln.image.transports.oci_layout import ref_names
from kiln.oci.platform import Platform
from kiln.store.oci_layout import OCIArchive, OCIArchiveWriter

if TYPE_CHECKING:
    from kiln.image.copy import CopyOptions

NAME = OCI_ARCHIVE
HOLDS_LISTS = True
SINGLE_IMAGE = False
COPY_DEFAULTS: CopyOptions = {}


def open_oci_archive(
    path: str, ref: str | None = None, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    """The image named ``ref`` in an oci-archive, read in place."""
    archive = OCIArchive(path, tmp_dir)
    return open_image(archive, archive.resolve(ref), platform, (ref,) if ref else ())


def oci_archive_images(path: str, tmp_dir: str | None = None) -> list[SourceImage]:
    """Every image entry of an oci-archive's index.json (named by ref.name if any)."""
    archive = OCIArchive(path, tmp_dir)
    return [
        open_image(archive, d, None, ref_names(d.annotations)) for d in archive.index().manifests
    ]


def open_source(
    path: str, ref: str = "", *, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    return open_oci_archive(path, ref or None, platform, tmp_dir)


def all_images(path: str, *, tmp_dir: str | None = None) -> list[SourceImage]:
    return oci_archive_images(path, tmp_dir)


@contextmanager
def open_sink(target: str | BinaryIO) -> Iterator[OCIArchiveWriter]:
    """To a file ``target``, or streamed to a writable binary stream (same bytes)."""
    with OCIArchiveWriter(target) as writer:
        yield writer


def sink_names(ref: str, stored_names: Sequence[str]) -> list[str]:
    return [ref] if ref else []
