"""A COPY written before its key (kiln.build.layer_first) SIGKILLed while its unpublished
blob is being written, or once it is written but before the key and the commit: nothing
of it is visible, what it leaves is collected (by nothing at all where the ingest is an
unnamed O_TMPFILE, by the next build where the file system has none: its directory names
its dead writer), the store checks clean, and the
next build makes the very image a clean build makes. Another build committing the same
layer while one holds it written but unpublished: both finish with the one image.

The kill points are lines the child prints from inside the build (its writer's hook for
each file read, or the return of the layer writer), so they do not depend on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from build_fixtures import ROOT_MARKS
from fixtures_images import MTIME, busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from killed_process import kill_when_started
from kiln.build.options import BuildOptions
from kiln.image import validate_image
from kiln.ops.build import build
from kiln.ops.check import check
from kiln.ops.context import Context
from kiln.store import Store
from kiln.store.check import check_content

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

WRITE_FIRST_AT = 1 << 20
DOCKERFILE = "FROM busybox\nCOPY files /files\n"

# the build, in a child that stops where it is told: "mid" after the writer read the
# first big file (the layer's blob half written), "written" once the layer is written
# and sealed but neither keyed nor published
CHILD = """
import dataclasses, sys, time
import kiln.build.layer_first as layer_first
from kiln.build.options import BuildOptions
from kiln.ops.build import build
from kiln.ops.context import Context
from kiln.store import Store

root, ctx, where, first_at, mtime = sys.argv[1:6]
real = layer_first.write_first

def stop(line):
    print(line, flush=True)
    time.sleep(600)

def write_first(store, plan, first, *args, **kwargs):
    if where == "mid":
        learn = first.learn
        def learn_then_stop(st, hexdigest):
            learn(st, hexdigest)
            stop("mid")
        first = dataclasses.replace(first, learn=learn_then_stop)
    out = real(store, plan, first, *args, **kwargs)
    assert out is not None, "the layer was not written first"
    stop("written")

layer_first.write_first = write_first  # stage_run imports it when a COPY needs it
with Store.open(root) as store:
    build(Context(store=store), BuildOptions(context=ctx, write_first_at=int(first_at),
                                             timestamp=int(mtime), tags=["killed"]))
"""


def _context(tmp_path) -> str:
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "files" / "a.bin").write_bytes(os.urandom(3 << 20))
    (ctx / "files" / "sub" / "b.bin").write_bytes(os.urandom(2 << 20))
    (ctx / "files" / "small.txt").write_text("small\n")
    (ctx / "Containerfile").write_text(DOCKERFILE)
    return str(ctx)


def _blobs(root: str) -> set[str]:
    return set(os.listdir(os.path.join(root, "blobs", "sha256")))


def _ingests(root: str) -> list[str]:
    path = os.path.join(root, "ingest")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "no_o_tmpfile"])
@pytest.mark.parametrize("where", ["mid", "written"])
def test_killed_write_first_leaves_nothing(kiln_store, busybox_image, tmp_path, where, tmpfile):  # noqa: F811
    root = kiln_store.root
    ctx = _context(tmp_path)
    kiln_store.close()
    before = _blobs(root)
    prelude = "" if tmpfile else "import os; del os.O_TMPFILE\n"
    argv = [sys.executable, "-c", prelude + CHILD, root, ctx, where, str(WRITE_FIRST_AT),
            str(MTIME)]  # fmt: skip
    assert kill_when_started(argv, where) == -signal.SIGKILL

    with Store.open(root) as store:
        assert _blobs(root) == before  # the layer was never published
        found = check_content(store)
        assert not found.blobs and not found.images and not found.database, found
        assert not [i for i in store.list_images() if "localhost/killed:latest" in i.names]
        # an unnamed ingest left nothing; a named directory (no O_TMPFILE) the next build's
        assert len(_ingests(root)) == (0 if tmpfile else 1)
        ctx_ops = Context(store=store)
        if not tmpfile:
            said = [f.problem for f in check(ctx_ops).findings if f.kind == "ingest"]
            assert said == [
                "1 unfinished blob write(s) of a killed command (a pull, build or load)"
            ]

        opts = dict(context=ctx, timestamp=MTIME)
        again = build(ctx_ops, BuildOptions(write_first_at=WRITE_FIRST_AT, tags=["again"], **opts))
        assert _ingests(root) == []
        validate_image(store, store.resolve_image("again").manifest_digest)
        clean = build(ctx_ops, BuildOptions(write_first_at=0, no_cache=True, **opts))
        assert again.image_id == clean.image_id  # the same image a clean build makes
        report = check(ctx_ops)
        assert report.problems == [], [f.to_json() for f in report.problems]
        assert _ingests(root) == []


# the same build in another process, to its end
OTHER = """
import sys
from kiln.build.options import BuildOptions
from kiln.ops.build import build
from kiln.ops.context import Context
from kiln.store import Store

root, ctx, first_at, mtime = sys.argv[1:5]
with Store.open(root) as store:
    build(Context(store=store), BuildOptions(context=ctx, write_first_at=int(first_at),
                                             timestamp=int(mtime), tags=["other"]))
"""


def test_same_layer_committed_meanwhile(kiln_store, busybox_image, tmp_path, monkeypatch):  # noqa: F811
    """Two builds of one context at once: the other one writes, keys and publishes the
    same layer while this one holds it written but unpublished. Both finish with the one
    image; the blob is stored once; the store checks clean."""
    import kiln.build.layer_first as layer_first

    ctx = _context(tmp_path)
    real = layer_first.write_first
    others = []

    def other_build_meanwhile(*args, **kwargs):
        out = real(*args, **kwargs)
        assert out is not None
        argv = [sys.executable, "-c", OTHER, kiln_store.root, ctx, str(WRITE_FIRST_AT),
                str(MTIME)]  # fmt: skip
        others.append(subprocess.run(argv, capture_output=True, text=True, timeout=120))
        return out

    # stage_run imports it when a COPY needs it
    monkeypatch.setattr(layer_first, "write_first", other_build_meanwhile)
    ctx_ops = Context(store=kiln_store)
    mine = build(ctx_ops, BuildOptions(context=ctx, write_first_at=WRITE_FIRST_AT,
                                       timestamp=MTIME, tags=["mine"]))  # fmt: skip
    monkeypatch.undo()
    assert len(others) == 1 and others[0].returncode == 0, others[0].stderr
    assert kiln_store.resolve_image("other").id == mine.image_id
    validate_image(kiln_store, kiln_store.resolve_image("mine").manifest_digest)
    report = check(ctx_ops)
    assert report.problems == [], [f.to_json() for f in report.problems]
    assert _ingests(kiln_store.root) == []
