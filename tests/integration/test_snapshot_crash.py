"""Crash safety of the snapshotter: a SIGKILLed unpack leaves only garbage gc removes."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import tarfile

from killed_process import kill_when_started
from kiln.snapshot import Snapshotter

CHILD = """
import hashlib, io, sys, time
from kiln.snapshot import Snapshotter
raw = open(sys.argv[2], "rb").read()
class Stalls(io.BytesIO):
    def read(self, n=-1):
        if self.tell() > len(raw) // 2:
            print("half", flush=True)
            time.sleep(60)
        return super().read(min(n, 65536) if n and n > 0 else 65536)
s = Snapshotter(sys.argv[1], driver="overlay")
s.unpack_layer("c1", None, lambda: Stalls(raw), "sha256:" + hashlib.sha256(raw).hexdigest())
"""


def test_sigkill_mid_unpack_leaves_only_garbage(tmp_path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(20):
            data = os.urandom(100_000)
            ti = tarfile.TarInfo(f"f{i}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    tar = tmp_path / "l.tar"
    tar.write_bytes(raw)
    root = str(tmp_path / "snaps")
    Snapshotter(root, driver="overlay").close()
    assert (
        kill_when_started([sys.executable, "-c", CHILD, root, str(tar)], "half") == -signal.SIGKILL
    )

    snaps = Snapshotter(root, driver="overlay")
    assert not snaps.has_layer("c1")
    assert os.listdir(os.path.join(root, "layers")) == []
    assert len(os.listdir(os.path.join(root, "tmp"))) == 1  # the half-applied layer, unseen
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = snaps.unpack_layer("c1", None, lambda: io.BytesIO(raw), diff_id)
    assert sorted(os.listdir(layer)) == sorted(f"f{i}" for i in range(20))
    snaps.gc(keep_layers={"c1"}, keep_active=set())
    assert os.listdir(os.path.join(root, "tmp")) == []
    assert snaps.has_layer("c1")
