"""Layers for snapshotter tests: a tar of files and directories, and its unpacking.

``entries`` are ``(name, data)`` pairs (or a dict of them): ``data`` None is a
directory (0755), bytes a regular file (0644), all owned by root.
"""

from __future__ import annotations

import hashlib
import io
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
