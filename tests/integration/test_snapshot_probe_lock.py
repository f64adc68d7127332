"""The overlay probe of a fresh store holds the snapshotter's root lock shared, as an unpack
does: a prune's sweep of ``tmp/`` (exclusive) cannot remove the probe's directory under it
(a first build beside a prune loop failed with "No such file or directory: .../probe-*/work")."""

from __future__ import annotations

import threading

import pytest

from kiln.snapshot import Snapshotter
from kiln.util.locks import file_lock

pytestmark = [pytest.mark.root]


def test_the_overlay_probe_waits_for_a_sweep(tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_SNAPSHOT_DRIVER", raising=False)
    snaps = Snapshotter(str(tmp_path / "snapshots"))
    probed = threading.Event()
    answer: list[str] = []

    def probe() -> None:
        answer.append(snaps.driver)
        probed.set()

    with file_lock(snaps._lock_path, exclusive=True):  # a sweep holds it
        worker = threading.Thread(target=probe, daemon=True)
        worker.start()
        assert not probed.wait(1.0), "the probe ran while the sweep held the lock"
    assert probed.wait(60)
    assert answer[0] in ("overlay", "copy")
