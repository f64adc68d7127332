"""The file transports, one module each, behind one shape (go-containerregistry's
``layout``/``tarball``): a source yielding :class:`~kiln.image.SourceImage` and a sink
:func:`~kiln.image.copy_image` writes into.

    oci_layout        oci:DIR[:REF]               an OCI image layout directory
    oci_archive       oci-archive:PATH[:REF]      the same in a tar file
    docker_archive    docker-archive:PATH[:REF]   a ``docker save`` tar file
    directory         dir:PATH                    one image as loose files

Every module is a :class:`Transport`; :data:`TRANSPORTS` finds one by its name, so
callers (push, pull, save, load, ``build --output``, ``FROM oci-archive:...``) pick
none by if/elif. What a sink can do beyond ``has_blob``/``put_blob``/``put_manifest``
(``required_compression``, ``note_layer``) it says itself, and ``copy_image`` asks.
The registry (``docker://``) and the store are sources and sinks of the same
``copy_image`` (``kiln.image.registry_source``/``registry_sink``, ``StoreDestination``);
their use cases (short names, pull policy, credentials) live in ``kiln.ops``.
The bytes of the layout and archive formats are ``kiln.store.oci_layout`` and
``kiln.store.docker_archive`` (L1, no image model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, Unpack

from kiln.errors import InvalidArgument
from kiln.image.copy import CopyOptions, CopyResult, ImageDestination, copy_image
from kiln.image.model import Image, SourceImage
from kiln.image.transports import directory, docker_archive, oci_archive, oci_layout
from kiln.image.transports.directory import DirImageDir, open_dir_image
from kiln.image.transports.docker_archive import docker_archive_images, open_docker_archive
from kiln.image.transports.oci_archive import oci_archive_images, open_oci_archive
from kiln.image.transports.oci_layout import open_oci_layout
from kiln.oci.platform import Platform
from kiln.util.held_signals import finish_held

#: (image, names) pairs to write; names are ref.name annotations or RepoTags.
Items = Iterable[tuple[Image, Sequence[str]]]


class Transport(Protocol):
    """What each transport module offers."""

    NAME: str
    HOLDS_LISTS: bool  # can hold a manifest list (oci:, oci-archive:)
    SINGLE_IMAGE: bool  # holds exactly one image (dir:)
    COPY_DEFAULTS: CopyOptions  # copy_image options its sink needs

    def open_source(
        self,
        path: str,
        ref: str = "",
        *,
        platform: Platform | None = None,
        tmp_dir: str | None = None,
    ) -> SourceImage:
        """The image ``ref`` names there; ``.names`` are the names a pull gives it."""
        ...

    def all_images(self, path: str, *, tmp_dir: str | None = None) -> list[SourceImage]:
        """Every image it holds, each with its names (load)."""
        ...

    def open_sink(self, target: str | BinaryIO) -> AbstractContextManager[ImageDestination]:
        """A copy destination, complete when the block ends without an exception."""
        ...

    def sink_names(self, ref: str, stored_names: Sequence[str]) -> list[str]:
        """The names an image written as ``TRANSPORT:PATH:REF`` gets there."""
        ...


TRANSPORTS: dict[str, Transport] = {
    t.NAME: t for t in (oci_layout, oci_archive, docker_archive, directory)
}


def transport(name: str) -> Transport:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise InvalidArgument(
            f'unknown transport "{name}": use one of {", ".join(sorted(TRANSPORTS))}'
        ) from None


def write_images(
    name: str, target: str | BinaryIO, items: Items, **copy_options: Unpack[CopyOptions]
) -> list[CopyResult]:
    """Copy ``items`` into a new sink of transport ``name`` at ``target`` (a path, or a
    writable binary stream for the archives: the same bytes, streamed)."""
    t = transport(name)
    items = list(items)
    if t.SINGLE_IMAGE and len(items) != 1:
        raise InvalidArgument(f"a {name}: destination holds exactly one image")
    options: CopyOptions = {**t.COPY_DEFAULTS, **copy_options}  # the caller's say wins, even None
    with t.open_sink(target) as sink:
        return [copy_image(img, sink, names, **options) for img, names in items]


def close_source(img: Image) -> None:
    """Close what an opened source holds open (an archive's file), if anything: held, so a
    Ctrl-C meanwhile leaves it for no garbage collection to close (the image is in a cycle)."""
    finish_held(lambda: _close_blobs(img))


def _close_blobs(img: Image) -> None:
    close = getattr(img.blobs, "close", None)
    if close is not None:
        close()


def write_oci_layout(
    path: str, items: Items, **copy_options: Unpack[CopyOptions]
) -> list[CopyResult]:
    return write_images(oci_layout.NAME, path, items, **copy_options)


def write_oci_archive(
    path: str | BinaryIO, items: Items, **copy_options: Unpack[CopyOptions]
) -> list[CopyResult]:
    """To a file ``path``, or streamed to a writable binary stream (same bytes)."""
    return write_images(oci_archive.NAME, path, items, **copy_options)


def write_docker_archive(
    path: str | BinaryIO, items: Items, **copy_options: Unpack[CopyOptions]
) -> list[CopyResult]:
    """Layers are written uncompressed, as ``docker save`` does; the config bytes are kept.

    ``path`` may be a writable binary stream: the archive is streamed to it, same bytes."""
    return write_images(docker_archive.NAME, path, items, **copy_options)


__all__ = [
    "TRANSPORTS",
    "DirImageDir",
    "Items",
    "Transport",
    "close_source",
    "docker_archive_images",
    "oci_archive_images",
    "open_dir_image",
    "open_docker_archive",
    "open_oci_archive",
    "open_oci_layout",
    "transport",
    "write_docker_archive",
    "write_images",
    "write_oci_archive",
    "write_oci_layout",
]
