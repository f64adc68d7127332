"""Parallel build stages share one context: its snapshotter must be made once."""

from __future__ import annotations

import threading

import pytest

from kiln.ops.context import open_context

pytestmark = pytest.mark.root


def test_threads_share_one_snapshotter(tmp_path):
    with open_context(str(tmp_path / "root")) as ctx:
        got, errors = [], []
        start = threading.Barrier(8)

        def use():
            start.wait()
            try:
                got.append(ctx.snapshots)
            except Exception as exc:  # "database is locked" was seen here
                errors.append(exc)

        threads = [threading.Thread(target=use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len({id(s) for s in got}) == 1
