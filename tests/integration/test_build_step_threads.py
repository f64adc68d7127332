"""A build's RUN steps share their helper threads: each ``Thread.start`` waits for the new
thread to get a CPU and the GIL (1-4 ms on a busy machine), so a step must not start its
own. Everything they started has ended when the build returns (the CLI exits without
teardown only as the last thread)."""

from __future__ import annotations

import threading

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS


def test_run_steps_start_no_thread_each_and_leave_none(build_env, monkeypatch):  # noqa: F811
    started: list[str] = []
    real_start = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM busybox\nRUN echo warm > /w\n", tags=["warm"])
    before = set(threading.enumerate())
    monkeypatch.setattr(threading.Thread, "start", counting)
    steps = "".join(f"RUN echo step {i} && echo {i} > /s{i}\n" for i in range(6))
    build_env.build(ctx, "FROM busybox\n" + steps, tags=["six"])
    monkeypatch.undo()
    # one output reader and one work-dir deleter for the whole build, not one per step
    assert started.count("kiln-run-output") <= 2, started
    assert started.count("kiln-snapshot-reaper") <= 2, started
    assert len(started) <= 3, started  # six steps
    assert "step 5" in build_env.output()
    # the build's readers are gone when it returns; the deleter when its store closes
    build_env.ctx.snapshots.settle()
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    if left:
        pytest.fail(f"threads left running after the build: {[t.name for t in left]}")
