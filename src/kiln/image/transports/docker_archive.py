"""The ``docker-archive:PATH[:REF]`` transport: a ``docker save`` tar file.

Source: the image tagged REF (or ``@N``, or the only one) with its RepoTags
(:class:`kiln.store.docker_archive.DockerArchive`). Sink: uncompressed layers,
several images with their RepoTags, as ``docker save`` writes them
(:class:`kiln.store.docker_archive.DockerArchiveWriter`); only the image ID survives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from kiln.image.model import SourceImage
from kiln.image.transport_names import DOCKER_ARCHIVE
from kiln.oci.platform import Platform
from kiln.oci.reference import Reference
from kiln.store.docker_archive import DockerArchive, DockerArchiveWriter

if TYPE_CHECKING:
    from kiln.image.copy import CopyOptions

NAME = DOCKER_ARCHIVE
HOLDS_LISTS = False
SINGLE_IMAGE = False
#: the archive's manifests are Docker v2s2 (the writer also wants uncompressed layers,
#: which its ``required_compression`` says)
COPY_DEFAULTS: CopyOptions = {"image_format": "docker"}


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


def open_source(
    path: str, ref: str = "", *, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    """The image ``ref`` names; pulled as ``docker-archive:PATH:REF`` it is named REF,
    else by its RepoTags."""
    img = open_docker_archive(path, ref or None, tmp_dir)
    if ref:
        img.names = (ref,)
    return img


def all_images(path: str, *, tmp_dir: str | None = None) -> list[SourceImage]:
    return docker_archive_images(path, tmp_dir)


@contextmanager
def open_sink(target: str | BinaryIO) -> Iterator[DockerArchiveWriter]:
    """To a file ``target``, or streamed to a writable binary stream (same bytes)."""
    with DockerArchiveWriter(target) as writer:
        yield writer


def sink_names(ref: str, stored_names: Sequence[str]) -> list[str]:
    """``docker-archive:PATH:REF`` tags the image REF there; without one, its own names."""
    return [str(Reference.parse(ref))] if ref else list(stored_names)
