"""Hostile and broken *image archives* (docker-archive, oci-archive) and rootfs tarballs.

Built from plain bytes with tarfile/json, for the CLI-level hostile-input suite
(``tests/integration/test_hostile_inputs.py``). Layer contents come from
``tests/archive_corpus.py`` where it already has the hostile tar.

An image here is a list of layer blobs plus a config naming their diff_ids;
``docker_archive`` and ``oci_archive`` lay it out as the format wants, with
hooks to swap, drop or add members, so each hostile case is a small variation
of a valid archive.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from archive_corpus import LNK, REG, SYM, build_corpus, tar_of

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ESCAPE = "pwned"  # the file name every escape tries to create


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.cache
def _corpus() -> dict[str, bytes]:
    return {c.name: c.data for c in build_corpus()}


def corpus_layer(name: str) -> bytes:
    """A hostile layer tar from tests/archive_corpus.py, by case name."""
    return _corpus()[name]


def plain_layer(name: str = "hello.txt", data: bytes = b"hello\n") -> bytes:
    return tar_of((name, REG, data))


def gzip_bomb(size: int = 32 << 20) -> bytes:
    """A gzip'd tar of one ``size``-byte file of zeros (ratio ~1000)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        info = tarfile.TarInfo("bomb")
        info.size = size
        gz.write(info.tobuf(tarfile.PAX_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(size >> 20):
            gz.write(zeros)
        gz.write(bytes(1024))
    return out.getvalue()


def device_setuid_layer() -> bytes:
    """Device nodes, a fifo, setuid/setgid files, a sticky world-writable dir."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, major, minor in (
            ("evil-mem", tarfile.CHRTYPE, 1, 1),
            ("evil-sda", tarfile.BLKTYPE, 8, 0),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.devmajor, info.devminor, info.mode = kind, major, minor, 0o666
            tf.addfile(info)
        for name, mode in (("suid-sh", 0o4755), ("sgid-sh", 0o2755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 4, mode
            tf.addfile(info, io.BytesIO(b"#!x\n"))
        info = tarfile.TarInfo("sticky")
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        tf.addfile(info)
    return buf.getvalue()


@dataclass
class Image:
    """Layer blobs as stored, their diff_ids, and the config that names them."""

    layers: list[bytes]
    diff_ids: list[str]
    config: bytes
    layer_types: list[str] = field(default_factory=list)

    @property
    def config_digest(self) -> str:
        return sha(self.config)


def image(
    layers: Sequence[bytes],
    diff_ids: Sequence[str] | None = None,
    docker: bool = False,
    config_extra: dict | None = None,
) -> Image:
    """An image of ``layers`` (tar or gzip'd tar bytes); diff_ids computed unless given."""
    blobs = list(layers)
    if diff_ids is None:
        diff_ids = [sha(gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b) for b in blobs]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created_by": f"layer {i}"} for i in range(len(blobs))],
        **(config_extra or {}),
    }
    types = []
    for b in blobs:
        gz = b[:2] == b"\x1f\x8b"
        if docker:
            types.append(DOCKER_LAYER + (".gzip" if gz else ""))
        else:
            types.append(OCI_LAYER_GZIP if gz else OCI_LAYER)
    raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return Image(blobs, list(diff_ids), raw, types)


Member = tuple  # (name, tar type, bytes or link name)
Hook = Callable[[list[Member]], list[Member]]


def _write(members: list[Member]) -> bytes:
    return tar_of(*members)


def docker_archive(
    img: Image, tags: Sequence[str] = ("hostile:1",), hook: Hook | None = None, manifest=None
) -> bytes:
    """A docker-archive: ``<diff hex>.tar`` layers, ``<config hex>.json``, manifest.json."""
    config_name = img.config_digest[7:] + ".json"
    layer_names = [f"{sha(b)[7:]}/layer.tar" for b in img.layers]
    entry = {"Config": config_name, "RepoTags": list(tags), "Layers": layer_names}
    if manifest is None:
        manifest = json.dumps([entry]).encode()
    members: list[Member] = [(config_name, REG, img.config)]
    members += [(n, REG, b) for n, b in zip(layer_names, img.layers, strict=True)]
    members.append(("manifest.json", REG, manifest))
    return _write(hook(members) if hook else members)


def oci_manifest(img: Image, config_digest: str | None = None, layers=None) -> bytes:
    layer_descs = layers or [
        {"mediaType": t, "digest": sha(b), "size": len(b)}
        for t, b in zip(img.layer_types, img.layers, strict=True)
    ]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_digest or img.config_digest,
                "size": len(img.config),
            },
            "layers": layer_descs,
        }
    ).encode()


def oci_index(
    manifest: bytes, ref: str = "docker.io/library/hostile:1", media=OCI_MANIFEST, platform=None
) -> bytes:
    desc = {
        "mediaType": media,
        "digest": sha(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }
    if platform:
        desc["platform"] = platform
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [desc],
        }
    ).encode()


def blob(data: bytes) -> Member:
    return (f"blobs/sha256/{sha(data)[7:]}", REG, data)


def oci_archive(
    img: Image,
    hook: Hook | None = None,
    manifest: bytes | None = None,
    index: bytes | None = None,
    extra_blobs: Sequence[bytes] = (),
) -> bytes:
    """An oci-archive (OCI layout in a tar): oci-layout, index.json, blobs/sha256/*."""
    manifest = manifest if manifest is not None else oci_manifest(img)
    index = index if index is not None else oci_index(manifest)
    members: list[Member] = [
        ("oci-layout", REG, b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", REG, index),
        blob(manifest),
        blob(img.config),
        *(blob(b) for b in img.layers),
        *(blob(b) for b in extra_blobs),
    ]
    return _write(hook(members) if hook else members)


def replace(name_part: str, new: Member | None) -> Hook:
    """A hook replacing (or with ``None`` dropping) the member whose name contains ``name_part``."""

    def hook(members: list[Member]) -> list[Member]:
        out = []
        for m in members:
            if name_part in m[0]:
                if new is not None:
                    out.append(new if new[0] else (m[0], *new[1:]))
            else:
                out.append(m)
        return out

    return hook


def rename_layers(new_prefix: str) -> Callable[[Image], Hook]:
    """A docker-archive whose layer member paths (and manifest.json Layers) start with a prefix."""

    def make(img: Image) -> Hook:
        def hook(members: list[Member]) -> list[Member]:
            out = []
            for name, kind, payload in members:
                if name.endswith("layer.tar"):
                    name = new_prefix + name
                elif name == "manifest.json":
                    entries = json.loads(payload)
                    entries[0]["Layers"] = [new_prefix + x for x in entries[0]["Layers"]]
                    payload = json.dumps(entries).encode()
                out.append((name, kind, payload))
            return out

        return hook

    return make


def nested_index(manifest: bytes, depth: int) -> tuple[bytes, list[bytes]]:
    """index.json -> index blob -> ... (``depth`` levels) -> manifest; returns (top, blobs)."""
    blobs = []
    child, media = manifest, OCI_MANIFEST
    here = {"architecture": "amd64", "os": "linux"}
    for _ in range(depth):
        idx = oci_index(child, media=media, platform=here)
        blobs.append(idx)
        child, media = idx, OCI_INDEX
    return oci_index(child, media=media, platform=here), blobs


def hardlink_member(name: str, target: str) -> Member:
    return (name, LNK, target)


def symlink_member(name: str, target: str) -> Member:
    return (name, SYM, target)


__all__ = [
    "ESCAPE",
    "Image",
    "blob",
    "corpus_layer",
    "device_setuid_layer",
    "docker_archive",
    "gzip_bomb",
    "hardlink_member",
    "image",
    "nested_index",
    "oci_archive",
    "oci_index",
    "oci_manifest",
    "plain_layer",
    "rename_layers",
    "replace",
    "sha",
    "symlink_member",
]
