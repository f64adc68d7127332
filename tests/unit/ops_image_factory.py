"""Small images made straight in a store, for the ops and CLI unit tests.

``make_image(store, ["a", "b"], names=[...])`` registers an image whose layers
are tiny tars holding one file each; an image whose layer list extends another's
is its child (the same chain ids), exactly as a build would leave them.
"""

from __future__ import annotations

import io
import itertools
import tarfile

from kiln.image import register_image
from kiln.oci import Descriptor, Digest, History, ImageConfig, Manifest, RuntimeConfig
from kiln.oci import media_types as mt

_clock = itertools.count(1_700_000_000, 60)


def layer_tar(name: str, size: int = 16) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = size, 1_700_000_000
        tar.addfile(info, io.BytesIO(name.encode().ljust(size, b".")[:size]))
    return buf.getvalue()


def _rfc3339(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def make_image(
    store,
    layers: list[str],
    names: list[str] = (),
    labels: dict[str, str] | None = None,
    created: int | None = None,
    size: int = 16,
    metadata_steps: tuple[str, ...] = (),
    architecture: str = "amd64",
    variant: str = "",
):
    """Register an image with one small layer per entry of ``layers``; returns its record."""
    created = next(_clock) if created is None else created
    blobs = [layer_tar(n, size) for n in layers]
    descs = []
    for b in blobs:
        d = store.put_bytes(b)
        descs.append(Descriptor(mt.OCI_LAYER, d, len(b)))
    config = ImageConfig(
        created=_rfc3339(created),
        architecture=architecture,
        variant=variant,
        os="linux",
        config=RuntimeConfig(labels=dict(labels or {})),
        diff_ids=tuple(str(Digest.of_bytes(b)) for b in blobs),
        history=tuple(History(created=_rfc3339(created), created_by=f"ADD {n}") for n in layers)
        + tuple(
            History(created=_rfc3339(created), created_by=m, empty_layer=True)
            for m in metadata_steps
        ),
    )
    raw = config.to_bytes()
    cdesc = Descriptor(mt.OCI_CONFIG, store.put_bytes(raw), len(raw))
    manifest = Manifest.build(mt.OCI_MANIFEST, cdesc, descs)
    return register_image(store, manifest, ImageConfig.parse(raw), list(names))


def add_container(store, image_id: str, name: str = "c1") -> str:
    import os
    import time

    from kiln.store import ContainerRecord

    cid = os.urandom(32).hex()
    store.put_container(ContainerRecord(cid, name, image_id, {}, time.time()))
    return cid
