"""Read an image's config and full file listing, from kiln's store or from an OCI layout.

Used by the Dockerfile conformance and buildah-parity suites. Everything here
reads plain JSON and tar streams itself (only the kiln side opens the store
through ``kiln.store``/``kiln.image``), so the same listing code judges kiln's
images and buildah's.

``Entry`` is what the suites compare: type, permission bits, owner, size, sha256
of the content and link target. Mtimes are kept apart (``mtime``) because they
are compared only where a test asks for them. Hard links are listed as the file
they point to (which copy an implementation turns into the link is not
observable from inside a container).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = [
    "Entry",
    "Probe",
    "buildah_image",
    "dir_listing",
    "dir_transport_image",
    "docker_archive_image",
    "kiln_image",
    "kiln_image_count",
    "listing",
    "listings",
    "oci_layout_image",
    "open_decompressed",
]

_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


@dataclass(frozen=True)
class Entry:
    type: str
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    target: str = ""
    mtime: float = field(default=0, compare=False)

    def describe(self) -> dict:
        d = {"type": self.type, "mode": oct(self.mode), "uid": self.uid, "gid": self.gid}
        if self.type == "file":
            d.update(size=self.size, sha256=self.sha256)
        if self.target:
            d["target"] = self.target
        return d


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """A plain tar stream for a gzip, zstd, bzip2, xz or uncompressed layer blob."""
    data = stream.read()
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    elif data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    elif data[:3] == b"BZh":
        import bz2

        data = bz2.decompress(data)
    elif data[:6] == b"\xfd7zXZ\x00":
        import lzma

        data = lzma.decompress(data)
    return io.BytesIO(data)


def _norm(name: str) -> str:
    # "./.wh.x", ".wh.x" and "/.wh.x" are all "/.wh.x" (strip no dots that belong to the name)
    return posixpath.normpath("/" + name.lstrip("/"))


def _apply(files: dict[str, Entry], tar: tarfile.TarFile) -> None:
    for m in tar:
        path = _norm(m.name)
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base == ".wh..wh..opq":
            for p in [p for p in files if p.startswith(parent.rstrip("/") + "/")]:
                del files[p]
            continue
        if base.startswith(".wh."):
            gone = posixpath.join(parent, base[4:])
            for p in [p for p in files if p == gone or p.startswith(gone + "/")]:
                del files[p]
            continue
        if m.islnk():
            src = files.get(_norm(m.linkname))
            if src is None:
                raise AssertionError(f"hard link {path} to missing {m.linkname}")
            files[path] = Entry(
                "file", m.mode & 0o7777, m.uid, m.gid, src.size, src.sha256, "", m.mtime
            )
            continue
        kind = _TYPES.get(m.type)
        if kind is None:
            raise AssertionError(f"unexpected tar member type {m.type!r} for {path}")
        if kind != "dir" and path in files and files[path].type == "dir":
            for p in [p for p in files if p.startswith(path + "/")]:
                del files[p]
        sha = ""
        if kind == "file":
            f = tar.extractfile(m)
            sha = hashlib.sha256(f.read() if f else b"").hexdigest()
        target = m.linkname if kind == "symlink" else ""
        if kind in ("char", "block"):
            target = f"{m.devmajor},{m.devminor}"
        size = m.size if kind == "file" else 0
        files[path] = Entry(kind, m.mode & 0o7777, m.uid, m.gid, size, sha, target, m.mtime)


def listing(layers: Iterable[Callable[[], BinaryIO]]) -> dict[str, Entry]:
    """The merged filesystem of layer blobs given bottom first (whiteouts applied)."""
    return listings(layers)[0]


def listings(
    layers: Iterable[Callable[[], BinaryIO]],
) -> tuple[dict[str, Entry], list[dict[str, Entry]]]:
    """The merged filesystem and each layer's own entries, reading each blob once.

    A layer's entries are its tar members as written: whiteouts (``.wh.x``) and opaque
    markers (``.wh..wh..opq``) are entries of their own, a hard link is type ``hardlink``
    with its target's path, and ``/`` (``./``) is kept."""
    files: dict[str, Entry] = {}
    per_layer = []
    for opener in layers:
        with opener() as raw, tarfile.open(fileobj=open_decompressed(raw), mode="r:") as tar:
            _apply(files, tar)  # reads every member; the loop below walks the cached list
            per_layer.append(_layer_entries(tar))
    files.pop("/", None)
    return files, per_layer


def _layer_entries(tar: tarfile.TarFile) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for m in tar.getmembers():
        path = _norm(m.name)
        if m.islnk():
            out[path] = Entry("hardlink", m.mode & 0o7777, m.uid, m.gid, 0, "",
                              _norm(m.linkname), m.mtime)  # fmt: skip
            continue
        kind = _TYPES.get(m.type, f"type {m.type!r}")
        sha, target = "", m.linkname if kind == "symlink" else ""
        if kind == "file":
            f = tar.extractfile(m)
            sha = hashlib.sha256(f.read() if f else b"").hexdigest()
        if kind in ("char", "block"):
            target = f"{m.devmajor},{m.devminor}"
        size = m.size if kind == "file" else 0
        out[path] = Entry(kind, m.mode & 0o7777, m.uid, m.gid, size, sha, target, m.mtime)
    return out


@dataclass
class Probe:
    """One image: raw manifest and config JSON, and openers for its layer blobs."""

    manifest: dict
    config_doc: dict
    layer_openers: list[Callable[[], BinaryIO]]
    manifest_media_type: str = ""
    image_id: str = ""

    @property
    def config(self) -> dict:
        return self.config_doc.get("config") or {}

    @property
    def history(self) -> list[dict]:
        return self.config_doc.get("history") or []

    @property
    def layer_count(self) -> int:
        return len(self.layer_openers)

    def files(self) -> dict[str, Entry]:
        return listing(self.layer_openers)

    def layer_files(self, index: int) -> dict[str, Entry]:
        """The entries of one layer alone (whiteout files included as entries)."""
        files: dict[str, Entry] = {}
        opener = self.layer_openers[index]
        with opener() as raw, tarfile.open(fileobj=open_decompressed(raw), mode="r:") as tar:
            for m in tar:
                path = _norm(m.name)
                files[path] = Entry(
                    _TYPES.get(m.type, "hardlink"), m.mode & 0o7777, m.uid, m.gid, m.size
                )
        files.pop("/", None)
        return files

    def read(self, path: str) -> bytes:
        """The content of one regular file in the merged filesystem."""
        data = None
        for opener in self.layer_openers:
            with opener() as raw, tarfile.open(fileobj=open_decompressed(raw), mode="r:") as tar:
                for m in tar:
                    if _norm(m.name) == path and m.isfile():
                        data = tar.extractfile(m).read()
        if data is None:
            raise AssertionError(f"{path} is not a regular file in the image")
        return data


# --- kiln's store -------------------------------------------------------------------------------


def kiln_image(root: str, ref: str) -> Probe:
    """Read image ``ref`` (name or ID) from the kiln store at ``root``."""
    from kiln.image import open_store_image
    from kiln.store import Store

    store = Store.open(root)
    try:
        img = open_store_image(store, ref)
        manifest = json.loads(img.manifest.raw)
        with store.open_blob(img.manifest.config.digest) as f:
            config = json.loads(f.read())
        paths = [store.blob_path(d.digest) for d in img.layers]
        return Probe(
            manifest,
            config,
            [(lambda p=p: open(p, "rb")) for p in paths],
            img.manifest.media_type,
            img.id,
        )
    finally:
        store.close()


def kiln_image_count(root: str) -> int:
    from kiln.store import Store

    store = Store.open(root)
    try:
        return len(store.list_images())
    finally:
        store.close()


# --- OCI layouts and docker archives -----------------------------------------------------------


def _blob(layout: str, digest: str) -> str:
    algo, hexa = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexa)


def oci_layout_image(layout: str, index: int = 0) -> Probe:
    """The ``index``-th manifest of an OCI image layout directory."""
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    desc = idx["manifests"][index]
    with open(_blob(layout, desc["digest"])) as f:
        manifest = json.load(f)
    with open(_blob(layout, manifest["config"]["digest"])) as f:
        config = json.load(f)
    paths = [_blob(layout, d["digest"]) for d in manifest["layers"]]
    return Probe(
        manifest,
        config,
        [(lambda p=p: open(p, "rb")) for p in paths],
        manifest.get("mediaType", desc.get("mediaType", "")),
        manifest["config"]["digest"],
    )


def docker_archive_image(path: str) -> Probe:
    """The first image of a docker-archive (``docker save``) tar file."""
    with tarfile.open(path) as tar:
        man = json.load(tar.extractfile("manifest.json"))[0]
        config = json.load(tar.extractfile(man["Config"]))
        blobs = {name: tar.extractfile(name).read() for name in man["Layers"]}
    return Probe(
        man,
        config,
        [(lambda b=blobs[n]: io.BytesIO(b)) for n in man["Layers"]],
        "docker-archive",
        "sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest(),
    )


def dir_transport_image(path: str) -> Probe:
    """An image in containers/image's ``dir:`` layout (manifest kept byte for byte)."""
    with open(os.path.join(path, "manifest.json")) as f:
        manifest = json.load(f)

    def blob(digest: str) -> str:
        return os.path.join(path, digest.split(":", 1)[1])

    with open(blob(manifest["config"]["digest"])) as f:
        config = json.load(f)
    paths = [blob(d["digest"]) for d in manifest["layers"]]
    return Probe(
        manifest,
        config,
        [(lambda p=p: open(p, "rb")) for p in paths],
        manifest.get("mediaType", ""),
        manifest["config"]["digest"],
    )


def buildah_image(buildah: list[str], ref: str, workdir: str) -> Probe:
    """Push ``ref`` from a buildah storage to a ``dir:`` under ``workdir`` and read it.

    ``dir:`` keeps the manifest and config as built (an ``oci:`` push would turn
    a Docker-format image into OCI and drop HEALTHCHECK and ONBUILD).
    """
    out = os.path.join(workdir, "dir-" + hashlib.sha256(ref.encode()).hexdigest()[:12])
    subprocess.run(
        [*buildah, "push", "--quiet", ref, f"dir:{out}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dir_transport_image(out)


def dir_listing(root: str) -> dict[str, Entry]:
    """The same listing for a directory tree on disk (e.g. ``--output type=local``)."""
    files: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            path = "/" + os.path.relpath(full, root)
            mode = st.st_mode & 0o7777
            if os.path.islink(full):
                files[path] = Entry("symlink", mode, st.st_uid, st.st_gid, 0, "",
                                    os.readlink(full), st.st_mtime)  # fmt: skip
            elif os.path.isdir(full):
                files[path] = Entry("dir", mode, st.st_uid, st.st_gid, 0, "", "", st.st_mtime)
            else:
                with open(full, "rb") as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                files[path] = Entry("file", mode, st.st_uid, st.st_gid, st.st_size, sha, "",
                                    st.st_mtime)  # fmt: skip
    return files
