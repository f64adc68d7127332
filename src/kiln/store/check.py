"""Checking the store's content and metadata (``kiln system check``), and the safe repairs.

What is checked:

- every blob file: its bytes hash to its name (skipped when ``quick``) and its size is
  what every descriptor naming it says;
- every image: its manifest and config blobs are present and parse, the manifest names
  the config that is the image's ID, the config's diff IDs give the chain IDs the image's
  rows record, one layer blob per diff ID, each present with the size its descriptor says;
- every manifest list: its document is present and intact, and every child manifest it
  names and every blob of those children is present;
- the database (``PRAGMA quick_check``, foreign keys).

Repairs, each safe: a blob whose bytes do not match its name is deleted (it can never be
served as what it claims; checked unchanged under the exclusive GC lock, so a concurrent
publish of the right bytes is not lost); an image or list that is damaged is removed (as
``podman system check --repair`` does: pull or build it again), unless a working container
uses the image. GC frees what they held.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import TYPE_CHECKING

from kiln.errors import DigestMismatch, InvalidArgument, KilnError, NotFound
from kiln.oci import Digest, Digester
from kiln.oci.config import ImageConfig
from kiln.oci.manifest import Index, Manifest
from kiln.oci.strict_json import MAX_CONFIG_BYTES
from kiln.store import paths
from kiln.store.ingest import CHUNK
from kiln.util.lazy_dataclass import dataclass
from kiln.util.locks import file_lock

if TYPE_CHECKING:
    from kiln.store.records import ImageRecord
    from kiln.store.store import Store

__all__ = [
    "BlobProblem",
    "ContentCheck",
    "check_content",
    "delete_corrupt_blob",
    "remove_damaged_image",
    "remove_damaged_list",
]


@dataclass(frozen=True)
class BlobProblem:
    digest: str
    problem: str
    size: int
    stat_key: tuple[int, int, int]  # (inode, size, mtime_ns) when found: unchanged -> delete


@dataclass
class ContentCheck:
    blobs_checked: int = 0
    blobs: list[BlobProblem] = field(default_factory=list)
    images: dict[str, list[str]] = field(default_factory=dict)  # image id -> problems
    lists: dict[str, list[str]] = field(default_factory=dict)  # list id -> problems
    database: list[str] = field(default_factory=list)
    images_checked: int = 0
    lists_checked: int = 0


def check_content(store: Store, quick: bool = False) -> ContentCheck:
    out = ContentCheck()
    sizes: dict[str, set[int]] = {}  # blob -> sizes its descriptors claim
    for rec in store.list_images():
        out.images_checked += 1
        problems = _image_problems(store, rec, sizes)
        if problems:
            out.images[rec.id] = problems
    for idx in store.list_indexes():
        out.lists_checked += 1
        problems = _list_problems(store, idx.id, idx.digest, idx.media_type, sizes)
        if problems:
            out.lists[idx.id] = problems
    for digest in list(store.iter_blobs()):
        path = paths.blob_path(store.root, digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        out.blobs_checked += 1
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        claimed = sizes.get(str(digest), set())
        if claimed and st.st_size not in claimed:
            want = " or ".join(str(s) for s in sorted(claimed))
            problem = f"has {st.st_size} bytes, its descriptors say {want}"
            out.blobs.append(BlobProblem(str(digest), problem, st.st_size, key))
            continue
        if not quick:
            actual = _hash_file(path, digest.algorithm)
            if actual is not None and actual != digest:
                problem = f"content is corrupt (it hashes to {actual})"
                out.blobs.append(BlobProblem(str(digest), problem, st.st_size, key))
    bad = {b.digest for b in out.blobs}
    if bad:  # images and lists naming a corrupt blob are damaged too
        for rec in store.list_images():
            named = {rec.manifest_digest, rec.config_digest, *rec.layer_blobs}
            for d in sorted(named & bad):
                out.images.setdefault(rec.id, []).append(f"blob {d} is corrupt")
        for idx in store.list_indexes():
            for d in sorted({idx.digest, *_list_blobs(store, idx.id)} & bad):
                out.lists.setdefault(idx.id, []).append(f"blob {d} is corrupt")
    with store.db.snapshot() as conn:
        for row in conn.execute("PRAGMA quick_check"):
            if row[0] != "ok":
                out.database.append(str(row[0]))
        for row in conn.execute("PRAGMA foreign_key_check"):
            out.database.append(f"table {row[0]} row {row[1]} refers to a missing {row[2]}")
    return out


def _read(store: Store, digest: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The blob (the caps every reader of manifests and configs applies: larger parses as
    damaged, as it would on use)."""
    with store.open_blob(Digest.parse(digest)) as f:
        return f.read(limit + 1)


def _image_problems(store: Store, rec: ImageRecord, sizes: dict[str, set[int]]) -> list[str]:
    problems: list[str] = []
    try:
        manifest = Manifest.parse(_read(store, rec.manifest_digest), rec.manifest_media_type)
    except NotFound:
        return [f"manifest blob {rec.manifest_digest} is missing"]
    except (InvalidArgument, ValueError) as exc:
        return [f"manifest blob {rec.manifest_digest} does not parse: {exc}"]
    if str(manifest.config.digest) != rec.config_digest or rec.config_digest != rec.id:
        problems.append(f"its manifest names config {manifest.config.digest}, not its ID")
    sizes.setdefault(str(manifest.config.digest), set()).add(manifest.config.size)
    try:
        config = ImageConfig.parse(_read(store, str(manifest.config.digest)))
    except NotFound:
        problems.append(f"config blob {manifest.config.digest} is missing")
        config = None
    except (InvalidArgument, ValueError) as exc:
        problems.append(f"config blob {manifest.config.digest} does not parse: {exc}")
        config = None
    for i, layer in enumerate(manifest.layers):
        sizes.setdefault(str(layer.digest), set()).add(layer.size)
        if not store.has_blob(layer.digest):
            problems.append(f"layer {i} blob {layer.digest} is missing")
    blobs = [str(layer.digest) for layer in manifest.layers]
    if rec.layer_blobs and list(rec.layer_blobs) != blobs:
        problems.append("its recorded layer blobs are not its manifest's")
    if config is not None:
        if len(config.diff_ids) != len(manifest.layers):
            problems.append(
                f"its config has {len(config.diff_ids)} diff IDs for {len(manifest.layers)} layers"
            )
        elif _chain_ids(config.diff_ids) != list(rec.layers):
            problems.append("its layer rows do not match its config's diff IDs")
    return problems


def _list_problems(store: Store, list_id: str, digest: str, media_type: str,
                   sizes: dict[str, set[int]]) -> list[str]:  # fmt: skip
    try:
        raw = _read(store, digest)
        index = Index.parse(raw, media_type)
    except NotFound:
        return [f"its document {digest} is missing"]
    except (InvalidArgument, ValueError) as exc:
        return [f"its document {digest} does not parse: {exc}"]
    if str(Digest.of_bytes(raw)) != digest:
        return [f"its document {digest} is corrupt"]
    problems = []
    for child in index.manifests:
        sizes.setdefault(str(child.digest), set()).add(child.size)
        if not store.has_blob(child.digest):
            problems.append(f"child manifest {child.digest} is missing")
    for blob in _list_blobs(store, list_id):
        try:
            present = store.has_blob(Digest.parse(blob))
        except InvalidArgument:
            present = False
        if not present:
            problems.append(f"blob {blob} of a child is missing")
    return sorted(set(problems))


def _list_blobs(store: Store, list_id: str) -> list[str]:
    rows = store.db.query("SELECT digest FROM index_blobs WHERE index_id=?", (list_id,))
    return [r[0] for r in rows]


def _chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else str(Digest.of_bytes(f"{out[-1]} {diff_id}".encode())))
    return out


def _hash_file(path: str, algorithm: str) -> Digest | None:
    digester = Digester(algorithm)
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                digester.update(chunk)
    except FileNotFoundError:
        return None
    return digester.digest()


def delete_corrupt_blob(store: Store, problem: BlobProblem) -> bool:
    """Delete the blob ``problem`` found, if it is still the file that was checked."""
    path = paths.blob_path(store.root, Digest.parse(problem.digest))
    with file_lock(os.path.join(store.root, paths.GC_LOCK), exclusive=True):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if (st.st_ino, st.st_size, st.st_mtime_ns) != problem.stat_key:
            return False  # replaced meanwhile (a pull published the right bytes)
        os.unlink(path)
    return True


def remove_damaged_image(store: Store, image_id: str) -> list[str]:
    """Forget a damaged image; returns the names it had. Conflict if a container uses it."""
    names = store.names_of(image_id)
    store.delete_image(image_id)
    return names


def remove_damaged_list(store: Store, list_id: str) -> list[str]:
    try:
        names = list(store.get_index(list_id).names)
    except (KilnError, DigestMismatch):
        names = []
    store.delete_index(list_id)
    return names
