"""The ``dir:`` transport: one image as loose files, as skopeo and podman write it.

    DIR/version          "Directory Transport Version: 1.1\\n"
    DIR/manifest.json    the manifest bytes, unchanged (so its digest survives)
    DIR/<hex>            each blob (config, layers) named by its digest's hex

Blobs are verified as they are written and as they are read; a blob appears
under its name only when complete (temp file, fsync, rename).

containers/image writes a layer it holds uncompressed (``podman save --format docker-dir``
without ``--compress``, ``skopeo copy docker-archive:... dir:...``) under the gzip media
type its source reported; podman and skopeo read such a layer by its bytes. The reader
does too: the manifest it serves names that layer uncompressed (a new manifest digest;
the config, so the image ID, is the file's).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO

from kiln.archive.compression import Compression, detect
from kiln.errors import DigestMismatch, InvalidArgument, NotFound
from kiln.image.model import SourceImage
from kiln.image.transport_names import DIR
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest, Digester
from kiln.oci.manifest import Manifest
from kiln.oci.platform import Platform
from kiln.oci.strict_json import MAX_MANIFEST_BYTES
from kiln.util.atomic import AtomicFile, atomic_write
from kiln.util.output import naming, output_dir, output_stream
from kiln.util.regular_file import open_regular_file

if TYPE_CHECKING:
    from kiln.image.copy import CopyOptions

VERSION_FILE = "version"
VERSION = b"Directory Transport Version: 1.1\n"
MANIFEST_FILE = "manifest.json"
_CHUNK = 1 << 20

NAME = DIR
HOLDS_LISTS = False
SINGLE_IMAGE = True  # one manifest.json: a second image would replace the first
COPY_DEFAULTS: CopyOptions = {}


class DirImageDir:
    """Reader and writer over one ``dir:`` directory (a BlobSource and a copy destination)."""

    def __init__(self, path: str, create: bool = False):
        self.path = path
        self._manifest: Manifest | None = None  # read: served by digest too
        if create:
            output_dir(path, "a dir: image")
            with naming(path):
                atomic_write(os.path.join(path, VERSION_FILE), VERSION)
        elif not os.path.isfile(os.path.join(path, MANIFEST_FILE)):
            raise NotFound(f"{path}: not a dir: image (no {MANIFEST_FILE})")

    def _blob_file(self, digest: Digest) -> str:
        return os.path.join(self.path, digest.hex)

    # BlobSource
    def has_blob(self, digest: Digest) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._blob_file(digest)).st_mode)
        except OSError:
            return False

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return open_regular_file(self._blob_file(digest), "the blob file")
        except FileNotFoundError:
            # manifest.json is the manifest's blob: a source serves it by its digest
            if self._manifest is not None and self._manifest.digest == digest:
                return io.BytesIO(self._manifest.raw)
            raise NotFound(f"blob {digest} is missing from {self.path}") from None

    def read_manifest(self) -> Manifest:
        with open(os.path.join(self.path, MANIFEST_FILE), "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(f"{self.path}/{MANIFEST_FILE} is too large to be a manifest")
        self._manifest = self._as_stored(Manifest.parse(raw))
        return self._manifest

    def _as_stored(self, manifest: Manifest) -> Manifest:
        """``manifest`` with each layer that claims a compression but is a plain tar
        (containers/image's uncompressed dir: layers) named uncompressed."""
        layers, plain = list(manifest.layers), "docker" if manifest.is_docker else "oci"
        for i, desc in enumerate(layers):
            if mt.layer_compression(desc.media_type) == "none" or not self.has_blob(desc.digest):
                continue
            with open_regular_file(self._blob_file(desc.digest), "the blob file") as f:
                if detect(f.read(6)) is not Compression.NONE:
                    continue
            layers[i] = replace(desc, media_type=mt.layer_media_type(plain, "none"))
        if layers == list(manifest.layers):
            return manifest
        return Manifest.build(manifest.media_type, manifest.config, layers, manifest.annotations)

    # destination
    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if self.has_blob(desc.digest):
            return
        with AtomicFile(self._blob_file(desc.digest)) as out:
            dest = output_stream(out.file, self.path)  # a full disk names this directory
            hasher, size = Digester(desc.digest.algorithm), 0
            while chunk := stream.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                dest.write(chunk)
            dest.flush()
            got = hasher.digest()
            if got != desc.digest or size != desc.size:
                raise DigestMismatch(
                    f"blob {desc.digest}: got {got} ({size} bytes), expected {desc.size} bytes",
                    str(desc.digest),
                    str(got),
                )

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        manifest = Manifest.parse(raw, media_type)
        for b in [manifest.config, *manifest.layers]:
            if not self.has_blob(b.digest):
                raise InvalidArgument(f"put the image's blobs before its manifest: {b.digest}")
        with naming(self.path):
            atomic_write(os.path.join(self.path, MANIFEST_FILE), raw)
        return manifest.descriptor()


def open_dir_image(path: str) -> SourceImage:
    """The image in a ``dir:`` directory."""
    d = DirImageDir(path)
    return SourceImage(d, d.read_manifest())


def open_source(
    path: str, ref: str = "", *, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    return open_dir_image(path)


def all_images(path: str, *, tmp_dir: str | None = None) -> list[SourceImage]:
    return [open_dir_image(path)]


@contextmanager
def open_sink(target: str | BinaryIO) -> Iterator[DirImageDir]:
    if not isinstance(target, str):
        raise InvalidArgument("a dir: image is a directory: give it as a path")
    yield DirImageDir(target, create=True)


def sink_names(ref: str, stored_names: Sequence[str]) -> list[str]:
    return []  # a dir: image has no name


__all__ = ["DirImageDir", "open_dir_image"]
