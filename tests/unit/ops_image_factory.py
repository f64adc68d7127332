"""Small images made straight in a store, for the ops and CLI unit tests.

``make_image(store, ["a", "b"], names=[...])`` registers an image whose layers
are tiny tars holding one file each; an image whose layer list extends another's
is its child (the same chain ids), exactly as a build would leave them.

For the tests of what a read costs: the ``image_store`` fixture (an empty store in
``tmp_path/root``, closed afterwards; import it into the test module) and
``with blob_reads() as opened:`` (the files under a store's ``blobs/`` this process opened
inside the block, read through one audit hook for the whole run).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
import tarfile
from collections.abc import Iterator

import pytest

from kiln.image import register_image
from kiln.oci import Descriptor, Digest, History, ImageConfig, Manifest, RuntimeConfig
from kiln.oci import media_types as mt
from kiln.store import Store

_clock = itertools.count(1_700_000_000, 60)
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str):
        _opened.append(args[0])


sys.addaudithook(_audit)  # once per process: a hook cannot be removed


@contextlib.contextmanager
def blob_reads() -> Iterator[list[str]]:
    """The paths under a ``blobs/`` directory opened inside the block (filled on exit)."""
    global _opened
    found: list[str] = []
    _opened = []
    try:
        yield found
    finally:
        found[:] = [p for p in _opened if "/blobs/" in p]
        _opened = None


@pytest.fixture
def image_store(tmp_path) -> Iterator[Store]:
    """An empty store in ``tmp_path/root``, closed after the test."""
    store = Store.open(str(tmp_path / "root"))
    yield store
    store.close()


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
