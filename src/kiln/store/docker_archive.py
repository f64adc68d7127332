"""docker-archive (``docker save`` / ``podman save`` format) as a blob source and sink.

An archive holds ``manifest.json`` (a list of ``{Config, RepoTags, Layers}``),
each image's config JSON, and its layer tars: ``<id>/layer.tar`` in the legacy
layout, ``<diff_id>.tar`` as podman writes, or ``blobs/sha256/<hex>`` as Docker
25+ writes (with an OCI ``index.json`` beside it). There is no registry
manifest in the legacy format, so the reader makes one.

Digest decision (what keeps round trips stable):

* The image ID — the config digest — always survives: the config file's bytes
  are served unchanged.
* Layers are served as they are stored in the archive. Uncompressed layers (the
  Docker convention) keep media type ``application/vnd.docker.image.rootfs.diff.tar``
  and their blob digest *is* their diff_id, so no hashing pass is needed to
  describe them; gzip and zstd layers (accepted by ``docker load``) are hashed once.
  An xz or bzip2 layer (``docker load`` and ``podman load`` accept those too; no media
  type names them) is served as its tar: its digest is its diff_id, its size is counted
  by one decompressing pass when the archive is opened.
* The synthesised manifest is Docker v2 schema 2, canonical JSON, built only from
  the config and the layer descriptors: loading the same archive twice, or
  saving what was loaded and loading it again, gives the same manifest digest.
* When the archive also carries an OCI index (Docker 25+) whose manifest names
  this config and whose blobs are all present, that manifest is used as is, so
  its digest survives too.

The writer stores layers uncompressed (``<diff_id hex>.tar``), configs as
``<config hex>.json``, several images with their RepoTags, and a legacy
``repositories`` file. Compressed layers must be decompressed by the caller
(``required_compression = "none"`` says so).

Imports only kiln.oci, kiln.archive and kiln.errors (this is an L1 transport).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import field
from typing import BinaryIO

from kiln.archive.compression import CHUNK, Compression, detect, open_decompressed
from kiln.errors import InvalidArgument, NotFound
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest, Digester
from kiln.oci.manifest import Index, Manifest
from kiln.oci.reference import Reference
from kiln.oci.strict_json import MAX_CONFIG_BYTES, loads, loads_object
from kiln.store.oci_layout import (
    INDEX_FILE,
    ArchiveWriter,
    TarIndex,
    TarStream,
    VerifyingReader,
    blob_member,
)
from kiln.util.lazy_dataclass import dataclass

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
_LAYER_TYPES = {
    Compression.NONE: mt.DOCKER_LAYER,
    Compression.GZIP: mt.DOCKER_LAYER_GZIP,
    Compression.ZSTD: mt.DOCKER_LAYER_ZSTD,
}


@dataclass(frozen=True)
class ArchiveImage:
    """One image of a docker-archive: its (possibly synthesised) manifest and tags."""

    manifest: Manifest
    repo_tags: tuple[str, ...] = ()
    members: dict[Digest, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def manifest_digest(self) -> Digest:
        return self.manifest.digest

    @property
    def config_digest(self) -> Digest:
        return self.manifest.config.digest


def _same_name(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return str(Reference.parse(a)) == str(Reference.parse(b))
    except InvalidArgument:
        return False


class DockerArchive:
    """A read-only docker-archive, read in place (members by offset)."""

    def __init__(self, path: str, tmp_dir: str | None = None):
        self.location = path
        self._tar = TarIndex(path, tmp_dir)
        self._blobs: dict[Digest, str] = {}
        self._manifests: dict[Digest, bytes] = {}
        self._inflate: dict[str, Compression] = {}  # xz/bzip2 layer members, served as tars
        self._images = self._load()

    # --- reading manifest.json ---

    def _load(self) -> list[ArchiveImage]:
        try:
            raw = self._tar.read_bytes(MANIFEST_FILE)
        except NotFound:
            raise InvalidArgument(
                f"{self.location} is not a docker-archive (no manifest.json)"
            ) from None
        entries = loads(raw, what=f"{self.location}: manifest.json")
        if not isinstance(entries, list) or not entries:
            raise InvalidArgument(f"{self.location}: manifest.json must be a non-empty list")
        oci = self._oci_manifests()
        return [self._image(i, entry, oci) for i, entry in enumerate(entries)]

    def _oci_manifests(self) -> dict[Digest, Manifest]:
        """Manifests of a Docker 25+ OCI index, by config digest."""
        if not self._tar.has(INDEX_FILE):
            return {}
        out: dict[Digest, Manifest] = {}
        try:
            index = Index.parse(self._tar.read_bytes(INDEX_FILE))
            for desc in index.manifests:
                if desc.media_type not in mt.MANIFESTS or not self._tar.has(
                    blob_member(desc.digest)
                ):
                    continue
                raw = self._tar.read_bytes(blob_member(desc.digest))
                if Digest.of_bytes(raw) != desc.digest:
                    continue
                man = Manifest.parse(raw, desc.media_type)
                blobs = [man.config, *man.layers]
                if all(self._tar.has(blob_member(b.digest)) for b in blobs):
                    out[man.config.digest] = man
        except InvalidArgument:
            return {}
        return out

    def _image(self, i: int, entry: object, oci: dict[Digest, Manifest]) -> ArchiveImage:
        what = f"{self.location}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument(f"{what} has no Config path")
        layers = entry.get("Layers") or []
        tags = entry.get("RepoTags") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise InvalidArgument(f"{what}: Layers must be a list of paths")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise InvalidArgument(f"{what}: RepoTags must be a list of names")
        for tag in tags:
            _check_repo_tag(what, tag)
        config_raw = self._tar.read_bytes(entry["Config"], MAX_CONFIG_BYTES)
        config_desc = Descriptor(mt.DOCKER_CONFIG, Digest.of_bytes(config_raw), len(config_raw))
        members = {config_desc.digest: entry["Config"]}
        if config_desc.digest in oci:
            manifest = oci[config_desc.digest]
            for blob in [manifest.config, *manifest.layers]:
                members[blob.digest] = blob_member(blob.digest)
        else:
            manifest = self._synthesise(what, config_raw, config_desc, layers, members)
        self._blobs.update(members)
        self._manifests[manifest.digest] = manifest.raw
        return ArchiveImage(manifest, tuple(tags), members)

    def _synthesise(
        self,
        what: str,
        config_raw: bytes,
        config_desc: Descriptor,
        layers: list[str],
        members: dict[Digest, str],
    ) -> Manifest:
        config = loads_object(config_raw, what=f"{what} config", limit=MAX_CONFIG_BYTES)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            raise InvalidArgument(
                f"{what} lists {len(layers)} layers but its config has {len(diff_ids)} diff_ids"
            )
        descs = []
        for path, diff_id in zip(layers, diff_ids, strict=True):
            with self._tar.open(path) as f:
                kind = detect(f.read(6))
            if kind not in _LAYER_TYPES:  # served as its tar
                digest = Digest.parse(diff_id)
                self._inflate[path] = kind  # by member: the same layer may be stored twice
                members[digest] = path
                descs.append(Descriptor(mt.DOCKER_LAYER, digest, self._tar_size(what, path, kind)))
                continue
            # an uncompressed layer's digest is its diff_id (verified when read)
            digest = Digest.parse(diff_id) if kind is Compression.NONE else self._hash_member(path)
            members[digest] = path
            descs.append(Descriptor(_LAYER_TYPES[kind], digest, self._tar.size(path)))
        return Manifest.build(mt.DOCKER_MANIFEST, config_desc, descs)

    def _hash_member(self, path: str) -> Digest:
        hasher = Digester()
        with self._tar.open(path) as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        return hasher.digest()

    def _tar_size(self, what: str, path: str, kind: Compression) -> int:
        """The size of the tar the ``kind``-compressed member ``path`` holds."""
        size = 0
        try:
            with self._tar.open(path) as f, open_decompressed(f, kind) as plain:
                while chunk := plain.read(CHUNK):
                    size += len(chunk)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{what}: layer {path}: {exc}") from None
        return size

    # --- public ---

    def images(self) -> list[ArchiveImage]:
        return list(self._images)

    def resolve(self, ref: str | None = None) -> ArchiveImage:
        """The image tagged ``ref``, or ``@N`` (N-th in manifest.json), or the only one."""
        if not ref:
            if len(self._images) == 1:
                return self._images[0]
            tags = ", ".join(t for img in self._images for t in img.repo_tags) or "untagged"
            raise InvalidArgument(
                f"{self.location} holds {len(self._images)} images ({tags}); say which one"
            )
        if ref.startswith("@"):
            try:
                return self._images[int(ref[1:])]
            except (ValueError, IndexError):
                raise NotFound(
                    f"{self.location} has no image {ref} (it holds {len(self._images)})"
                ) from None
        for img in self._images:
            if any(_same_name(ref, tag) for tag in img.repo_tags):
                return img
        tags = ", ".join(t for img in self._images for t in img.repo_tags) or "no tags"
        raise NotFound(f'{self.location} has no image tagged "{ref}" (it has: {tags})')

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._blobs or digest in self._manifests

    def open_blob(self, digest: Digest) -> BinaryIO:
        if digest in self._manifests:
            return io.BytesIO(self._manifests[digest])
        if digest not in self._blobs:
            raise NotFound(f"blob {digest} is not in {self.location}")
        member = self._blobs[digest]
        stream = self._tar.open(member)
        if member in self._inflate:
            stream = io.BufferedReader(_Inflated(stream, self._inflate[member]), CHUNK)
        return io.BufferedReader(
            VerifyingReader(stream, digest, what=f"blob {digest} in {self.location}"), CHUNK
        )

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> DockerArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Inflated(io.RawIOBase):
    """The tar of a compressed archive member; closing it closes the member too."""

    def __init__(self, member: BinaryIO, kind: Compression):
        self._member = member
        self._plain = open_decompressed(member, kind)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        return self._plain.readinto(buf)

    def close(self) -> None:
        if not self.closed:
            self._plain.close()
            self._member.close()
        super().close()


def _check_repo_tag(what: str, tag: str) -> None:
    """A RepoTags entry must be a NAME:TAG reference, as podman (containers/image) and
    dockerd refuse the archive otherwise: ``base`` (no tag) or ``Base:1`` (capitals) would
    else load unnamed. Checked before anything is read into a store."""
    try:
        ref = Reference.parse(tag, default_tag=False)
    except InvalidArgument as exc:
        raise InvalidArgument(f'{what}: invalid tag "{tag}" in RepoTags: {exc}') from None
    if not ref.tag:
        raise InvalidArgument(
            f'{what}: invalid tag "{tag}" in RepoTags: a name without a tag (want NAME:TAG)'
        )


class DockerArchiveWriter(ArchiveWriter):
    """Writes a docker-archive (several images, RepoTags) as a deterministic tar.

    ``target`` is a path (the file appears only when complete) or a writable
    binary stream, written sequentially with the same bytes (see TarStream).
    """

    required_compression = "none"

    def __init__(self, target: str | BinaryIO):
        self.path = target if isinstance(target, str) else None
        self._tar = TarStream(target)
        self._members: dict[Digest, str] = {}
        self._manifests: dict[Digest, bytes] = {}
        self._entries: list[dict] = []
        self._repositories: dict[str, dict[str, str]] = {}

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._members or digest in self._manifests

    def put_blob(self, desc: Descriptor, stream: BinaryIO) -> None:
        if self.has_blob(desc.digest):
            return
        if desc.media_type in mt.MANIFESTS or desc.media_type in mt.INDEXES:
            data = VerifyingReader(stream, desc.digest, desc.size).read()
            self._manifests[desc.digest] = data
            return
        if desc.media_type in mt.CONFIGS:
            name = f"{desc.digest.hex}.json"
        elif desc.media_type in mt.LAYERS:
            if mt.layer_compression(desc.media_type) != "none":
                raise InvalidArgument(
                    f"a docker-archive stores uncompressed layers, not {desc.media_type}; "
                    "copy the image with compression none"
                )
            name = f"{desc.digest.hex}.tar"
        else:
            raise InvalidArgument(f"a docker-archive cannot hold a {desc.media_type} blob")
        self._tar.add_stream(name, desc, stream)
        self._members[desc.digest] = name

    def put_manifest(self, raw: bytes, media_type: str, names: Sequence[str] = ()) -> Descriptor:
        """Add an image whose config and layers were put already, tagged with ``names``."""
        manifest = Manifest.parse(raw, media_type)
        missing = [
            str(b.digest)
            for b in [manifest.config, *manifest.layers]
            if b.digest not in self._members
        ]
        if missing:
            raise InvalidArgument(f"put the image's blobs before its manifest: {missing}")
        layers = [self._members[b.digest] for b in manifest.layers]
        config = self._members[manifest.config.digest]
        for entry in self._entries:
            if entry["Config"] == config and entry["Layers"] == layers:
                entry["RepoTags"] += [n for n in names if n not in entry["RepoTags"]]
                break
        else:
            self._entries.append({"Config": config, "RepoTags": list(names), "Layers": layers})
        top = manifest.layers[-1].digest.hex if manifest.layers else manifest.config.digest.hex
        for name in names:
            repo, _, tag = name.rpartition(":")
            if repo and "/" not in tag:
                self._repositories.setdefault(repo, {})[tag] = top
        return manifest.descriptor()

    def commit(self) -> None:
        if self._tar.done:
            return
        for entry in self._entries:
            if not entry["RepoTags"]:
                entry["RepoTags"] = None
        self._tar.add_file(MANIFEST_FILE, json.dumps(self._entries).encode())
        if self._repositories:
            self._tar.add_file(
                REPOSITORIES_FILE, json.dumps(self._repositories, sort_keys=True).encode()
            )
        self._tar.commit()

    def abort(self) -> None:
        self._tar.abort()


__all__ = ["ArchiveImage", "DockerArchive", "DockerArchiveWriter"]
