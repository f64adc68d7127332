"""``Context.stopped_by``: a copy of a context for one call another thread may stop. The
copy raises ``Cancelled`` at the call's next event (a build's pulls: any event; a pull a
caller cancels: only while blobs arrive), and it uses its lender's snapshotter and scratch
directory without owning them."""

from __future__ import annotations

import os
import threading

import pytest

from kiln.errors import Cancelled
from kiln.ops.context import open_context
from kiln.ops.events import PULL_STOPS_AT, Event, ListSink


def test_a_stopping_build_stops_its_pull_at_any_event(tmp_path):
    """A stage's pull fetching a manifest, or whose blobs were all there, emits no progress:
    it went on while its siblings stopped."""
    stop = threading.Event()
    with open_context(str(tmp_path / "root"), events=ListSink()) as ctx:
        build_pull = ctx.stopped_by(stop, "the build was cancelled")
        cancelled_pull = ctx.stopped_by(stop, "the pull was cancelled", PULL_STOPS_AT)
        build_pull.events.emit(Event(kind="status", message="Copying config"))
        stop.set()
        cancelled_pull.events.emit(Event(kind="status", message="Writing manifest"))
        with pytest.raises(Cancelled, match="the pull was cancelled"):
            cancelled_pull.events.emit(Event(kind="progress", message="Copying blob"))
        with pytest.raises(Cancelled, match="the build was cancelled"):
            build_pull.events.emit(Event(kind="status", message="Copying config"))
        assert ctx.events.messages() == ["Copying config", "Writing manifest"]


def test_closing_a_copy_leaves_its_lenders_scratch_and_snapshotter(tmp_path):
    """The copy had the lender's scratch directory and snapshotter as its own: closing it
    removed the one and closed the other; and each copy opened the snapshotter."""
    with open_context(str(tmp_path / "root")) as ctx:
        ctx.stopped_by(threading.Event(), "stopped")
        assert ctx._snapshots is None  # a pull of an image already here needs none
        scratch = ctx.tmpdir
        copy = ctx.stopped_by(threading.Event(), "stopped")
        assert copy.tmpdir == scratch and copy.snapshots is ctx.snapshots
        copy.close()
        assert os.path.isdir(scratch)
        assert ctx.snapshots.list_layers() == []  # still open
