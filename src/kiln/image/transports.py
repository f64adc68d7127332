"""Images from and into files: OCI layout directories, oci-archives, docker-archives.

Opening gives a :class:`SourceImage` over the transport's blob source;
writing copies images (with their names) through :func:`copy_image`.
The reader objects stay open as ``image.blobs``; close them with
``image.blobs.close()`` (archives) when done, or let them be collected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

from kiln.image.copy import CopyResult, copy_image
from kiln.image.model import Image, SourceImage, open_image
from kiln.oci.platform import Platform
from kiln.store.docker_archive import DockerArchive, DockerArchiveWriter
from kiln.store.oci_layout import OCIArchive, OCIArchiveWriter, OCILayout

#: (image, names) pairs to write; names are ref.name annotations or RepoTags.
Items = Iterable[tuple[Image, Sequence[str]]]


def open_oci_layout(
    path: str, ref: str | None = None, platform: Platform | None = None
) -> SourceImage:
    """The image named ``ref`` (ref.name annotation or digest) in an OCI layout directory."""
    layout = OCILayout(path)
    return open_image(layout, layout.resolve(ref), platform, (ref,) if ref else ())


def open_oci_archive(
    path: str, ref: str | None = None, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    """The image named ``ref`` in an oci-archive, read in place."""
    archive = OCIArchive(path, tmp_dir)
    return open_image(archive, archive.resolve(ref), platform, (ref,) if ref else ())


def open_docker_archive(
    path: str, ref: str | None = None, tmp_dir: str | None = None
) -> SourceImage:
    """The image tagged ``ref`` (or ``@N``, or the only one) in a docker-archive."""
    archive = DockerArchive(path, tmp_dir)
    entry = archive.resolve(ref)
    return SourceImage(archive, entry.manifest, entry.repo_tags)


def docker_archive_images(path: str, tmp_dir: str | None = None) -> list[SourceImage]:
    """Every image of a docker-archive, with its RepoTags as names."""
    archive = DockerArchive(path, tmp_dir)
    return [SourceImage(archive, e.manifest, e.repo_tags) for e in archive.images()]


def oci_archive_images(path: str, tmp_dir: str | None = None) -> list[SourceImage]:
    """Every image entry of an oci-archive's index.json (named by ref.name if any)."""
    archive = OCIArchive(path, tmp_dir)
    out = []
    for desc in archive.index().manifests:
        name = desc.annotations.get("org.opencontainers.image.ref.name")
        out.append(open_image(archive, desc, None, (name,) if name else ()))
    return out


def write_oci_layout(path: str, items: Items, **copy_options) -> list[CopyResult]:
    layout = OCILayout(path, create=True)
    return [copy_image(img, layout, names, **copy_options) for img, names in items]


def write_oci_archive(path: str | BinaryIO, items: Items, **copy_options) -> list[CopyResult]:
    """To a file ``path``, or streamed to a writable binary stream (same bytes)."""
    with OCIArchiveWriter(path) as writer:
        return [copy_image(img, writer, names, **copy_options) for img, names in items]


def write_docker_archive(path: str | BinaryIO, items: Items, **copy_options) -> list[CopyResult]:
    """Layers are written uncompressed, as ``docker save`` does; the config bytes are kept.

    ``path`` may be a writable binary stream: the archive is streamed to it, same bytes."""
    copy_options.setdefault("image_format", "docker")
    with DockerArchiveWriter(path) as writer:
        return [copy_image(img, writer, names, **copy_options) for img, names in items]
