"""Layers for snapshotter tests: a tar of files and directories, and its unpacking.

``entries`` are ``(name, data)`` pairs (or a dict of them): ``data`` None is a
directory (0755), bytes a regular file (0644), all owned by root.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Mapping

from kiln.snapshot import Snapshotter

Entries = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None]


def layer_tar(entries: Entries) -> tuple[bytes, str]:
    """(uncompressed PAX tar, its diff_id)."""
    items = entries.items() if isinstance(entries, Mapping) else entries
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in items:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, "sha256:" + hashlib.sha256(raw).hexdigest()


def unpack(snaps: Snapshotter, chain: str, parent: str | None, entries: Entries) -> str:
    """Unpack ``entries`` as layer ``chain`` over ``parent``; the layer's directory."""
    raw, diff_id = layer_tar(entries)
    return snaps.unpack_layer(chain, parent, lambda: io.BytesIO(raw), diff_id)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def layer_mismatches(store, snaps: Snapshotter) -> list[str]:
    """Every unpacked layer of every image in ``store`` against its blob: the regular
    files (path and sha256) must be the same. Returns one line per layer that differs."""
    import os

    from kiln.image import open_store_image

    problems: list[str] = []
    for rec in store.list_images():
        img = open_store_image(store, rec.id)
        for desc, chain in zip(img.layers, img.chain_ids, strict=True):
            if not snaps.has_layer(str(chain)):
                continue
            wanted: dict[str, str] = {}
            with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                for m in tar:
                    if m.isfile() and not os.path.basename(m.name).startswith(".wh."):
                        data = tar.extractfile(m).read()
                        wanted[m.name.lstrip("./")] = hashlib.sha256(data).hexdigest()
            top = snaps.layer_dirs(str(chain))[0]
            found: dict[str, str] = {}
            for dirpath, _dirs, names in os.walk(top):
                for name in names:
                    path = os.path.join(dirpath, name)
                    if os.path.isfile(path) and not os.path.islink(path):
                        rel = os.path.relpath(path, top)
                        found[rel] = hashlib.sha256(read(path)).hexdigest()
            if found != wanted:
                differ = sorted(
                    k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k)
                )
                problems.append(f"layer {chain} of {rec.id} differs from its blob at {differ}")
    return problems


def disagreements(snaps: Snapshotter) -> list[str]:
    """Where the snapshotter's directories and rows do not agree, once its background
    deletions are done: a directory under ``active/`` or ``layers/`` without its row, a
    row without its directory, anything left in ``tmp/``."""
    snaps.settle()
    problems = []
    for sub in ("active", "layers"):
        rows = {str(r[0]) for r in snaps.db.query(f"SELECT n FROM {sub}")}  # noqa: S608
        dirs = set(os.listdir(os.path.join(snaps.root, sub)))
        problems += [f"{sub}/{n} has no row" for n in sorted(dirs - rows)]
        problems += [f"{sub} row {n} has no directory" for n in sorted(rows - dirs)]
    return problems + [f"tmp/{n}" for n in os.listdir(os.path.join(snaps.root, "tmp"))]
