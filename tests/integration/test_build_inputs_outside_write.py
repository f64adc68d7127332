"""A step's --explain inputs are packed before its write transaction (root, runc).

A COPY of many files records their names for ``kiln build --explain``; compressing that
list takes a while, and doing it inside the step's one write transaction would hold the
store's write lock meanwhile, stalling every other writer (a parallel build, a server's
tag or rmi). While the inputs are packed, another connection must be able to write.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from build_fixtures import ROOT_MARKS  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build.options import BuildOptions
from kiln.ops.build import build
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.store import Store
from kiln.store import cache as store_cache

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]


def test_inputs_are_packed_while_others_can_write(kiln_store, busybox_image, tmp_path, monkeypatch):  # noqa: F811
    db_path = os.path.join(kiln_store.root, "kiln.db")
    seen: list[str] = []
    real_packed = store_cache._packed

    def packed_while_probing(inputs):
        other = sqlite3.connect(db_path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            seen.append("free")
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))
        finally:
            other.close()
        return real_packed(inputs)

    monkeypatch.setattr(store_cache, "_packed", packed_while_probing)
    ctx_dir = tmp_path / "ctx"
    (ctx_dir / "files").mkdir(parents=True)
    for i in range(300):
        (ctx_dir / "files" / f"f{i:03d}").write_text(f"{i}\n")
    (ctx_dir / "Containerfile").write_text(
        "FROM busybox\nCOPY files /files\nRUN ls /files | wc -l > /count\n"
    )
    store = Store(kiln_store.root)
    try:
        ctx = Context(store=store, events=ListSink())
        build(ctx, BuildOptions(context=str(ctx_dir), tags=["packed"]))
    finally:
        store.close()
    assert seen, "no step's inputs were packed: the test measures nothing"
    assert set(seen) == {"free"}, f"the write lock was held while packing: {seen}"
