"""What a tiny build writes (root, runc): its write transactions on the store's database,
counted, so that one more (a lock, a WAL frame, a commit) is a decision, not a drift.

In a fresh store: the RUN's container, its commit (layer, image, cache key, --explain
inputs), the CMD's --explain inputs, the final image with its cache key, the container's
removal, the name, the build record and event, the lease's removal. An end-of-build
trim of the --explain inputs with nothing past their bounds writes nothing.
"""

from __future__ import annotations

import pytest

from build_fixtures import ROOT_MARKS  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build.options import BuildOptions
from kiln.ops.build import build
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.store import Store
from sql_trace import statements_during

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

TINY_BUILD_WRITES = 8


def test_a_tiny_build_takes_its_write_transactions(kiln_store, busybox_image, tmp_path):  # noqa: F811
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    (ctx_dir / "Containerfile").write_text(
        'FROM busybox\nRUN echo hello > /hello\nCMD ["/bin/sh"]\n'
    )
    store = Store(kiln_store.root)
    try:
        ctx = Context(store=store, events=ListSink())
        opts = BuildOptions(context=str(ctx_dir), tags=["tiny"])
        seen = statements_during(store, lambda: build(ctx, opts))
        assert store.resolve_image("localhost/tiny:latest") is not None
    finally:
        store.close()
    writes = [s for s in seen if s.startswith("BEGIN IMMEDIATE")]
    assert len(writes) == TINY_BUILD_WRITES, "\n".join(seen)
