"""Crash safety: a process SIGKILLed mid-ingest leaves only garbage GC removes."""

from __future__ import annotations

import io
import os
import signal
import sys

import pytest

from killed_process import kill_when_started
from kiln.oci import Descriptor, Digest
from kiln.store import Store

DATA = bytes(range(256)) * (64 * 1024)  # 16 MiB
DIGEST = Digest.of_bytes(DATA)

CHILD = """
import sys, time
from kiln.oci import Descriptor, Digest
from kiln.store import Store
data = bytes(range(256)) * (64 * 1024)
s = Store.open(sys.argv[1])
desc = Descriptor("application/octet-stream", Digest.of_bytes(data), len(data))
with s.ingest(sys.argv[2], desc) as ing:
    ing.write(data[: 8 << 20])
    print("half", flush=True)
    time.sleep(60)
    ing.write(data[8 << 20 :])
    ing.commit()
"""


def kill_midway(root: str, ref: str, prelude: str = "") -> None:
    code = kill_when_started([sys.executable, "-c", prelude + CHILD, root, ref], "half")
    assert code == -signal.SIGKILL


@pytest.mark.parametrize("ref", ["", "pull:layer"])
def test_sigkill_mid_ingest_leaves_no_visible_blob(tmp_path, ref: str) -> None:
    root = str(tmp_path / "store")
    Store.open(root).close()
    kill_midway(root, ref)
    store = Store.open(root)
    assert not store.has_blob(DIGEST)
    assert os.listdir(os.path.join(root, "blobs", "sha256")) == []
    # a named ref keeps its partial data (resumable); an anonymous ingest is an unnamed
    # O_TMPFILE on this file system: a kill leaves nothing, not even garbage
    assert len(os.listdir(os.path.join(root, "ingest"))) == (1 if ref else 0)
    desc = Descriptor("application/octet-stream", DIGEST, len(DATA))
    if ref:
        with store.ingest(ref, desc) as ing:  # the partial is resumable
            assert ing.offset == 8 << 20
            ing.write(DATA[ing.offset :])
            ing.commit()
    else:
        store.put_blob(desc, io.BytesIO(DATA))
    assert store.open_blob(DIGEST).read() == DATA
    store.gc()
    assert os.listdir(os.path.join(root, "ingest")) == []
    assert store.has_blob(DIGEST)  # young, so kept by the grace period
    assert store.fsck() == []


def test_gc_removes_anonymous_crash_garbage(tmp_path) -> None:
    root = str(tmp_path / "store")
    Store.open(root).close()
    # where there is no O_TMPFILE (another file system, an old kernel), an anonymous
    # ingest is a directory a kill leaves behind
    kill_midway(root, "", prelude="import os; del os.O_TMPFILE\n")
    assert len(os.listdir(os.path.join(root, "ingest"))) == 1
    store = Store.open(root)
    store.gc()
    assert os.listdir(os.path.join(root, "ingest")) == []
