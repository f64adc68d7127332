"""What a store must be after an interrupted call, for the tests that interrupt one.

``store_left_behind`` lists what is not whole (empty: the store is whole), and
``set_store_right`` clears it so that the next trial shows its own; ``trial_context``
opens the store such trials run on. Each test adds what is its own (its containers, ...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

import kiln
from kiln.ops.check import check
from kiln.snapshot.mount import mounts_under
from snapshot_layers import disagreements


@contextlib.contextmanager
def trial_context(tmp: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[kiln.Context]:
    """A context on a store in ``tmp`` whose checks look at this test's scratch space and
    RUN bundles, not the machine's, and whose collections keep no blob for a grace."""
    for var, sub in (("TMPDIR", "scratch"), ("KILN_RUNTIME_DIR", "runtime")):
        os.mkdir(os.path.join(tmp, sub))
        monkeypatch.setenv(var, os.path.join(tmp, sub))
    monkeypatch.setattr(tempfile, "tempdir", os.path.join(tmp, "scratch"))
    with kiln.open_context(os.path.join(tmp, "root")) as ctx:
        ctx.store.blob_grace_seconds = 0
        yield ctx


def store_left_behind(ctx: kiln.Context, mounted: set[str] | None = None) -> list[str]:
    """What is not whole in the context's store and its snapshotter: what ``kiln system
    check`` finds, a lease, an ingest, a snapshot directory and its row that disagree,
    anything in the snapshotter's ``tmp/`` once its background deletions are done, a mount
    (but those in ``mounted``: a working container's ``kiln mount``)."""
    ctx.snapshots.settle()
    problems = [f"check: {f.kind} {f.subject}: {f.problem}" for f in check(ctx).findings]
    problems += [f"lease {lease.id} left" for lease in ctx.store.list_leases()]
    problems += [f"ingest/{n}" for n in os.listdir(os.path.join(ctx.store.root, "ingest"))]
    problems += [f"snapshots/{p}" for p in disagreements(ctx.snapshots)]
    mounted = mounted or set()
    return problems + [f"mounted: {m}" for m in mounts_under(ctx.store.root) if m not in mounted]


def set_store_right(ctx: kiln.Context) -> None:
    """Remove what ``store_left_behind`` found, so the next trial shows its own."""
    ctx.store.delete_leases([lease.id for lease in ctx.store.list_leases()])
    check(ctx, repair=True)
    for base in (os.path.join(ctx.store.root, "ingest"), os.path.join(ctx.snapshots.root, "tmp")):
        for n in os.listdir(base):
            shutil.rmtree(os.path.join(base, n), ignore_errors=True)
