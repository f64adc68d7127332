"""A Ctrl-C as a RUN's bundle directory is made leaves no bundle behind once the process's
bundles are gone: one interrupted there stayed in the runtime directory for good, with no
config.json naming its store, so no sweep took it (found by the interrupt fuzzer: a build
stopped by Ctrl-C as its RUN started)."""

from __future__ import annotations

import os
import signal

import pytest

from kiln.runtime import bundle as bundle_module
from kiln.runtime.options import RunOptions


def test_a_ctrl_c_as_the_bundle_is_taken_leaves_no_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    real = bundle_module._bundles.take

    def take_then_ctrl_c(state):
        taken = real(state)
        signal.raise_signal(signal.SIGINT)  # Python raises it here, in the main thread
        return taken

    monkeypatch.setattr(bundle_module._bundles, "take", take_then_ctrl_c)
    with (
        pytest.raises(KeyboardInterrupt),
        bundle_module.prepared(RunOptions(args=["true"]), str(rootfs)),
    ):
        pytest.fail("the run went on though interrupted")
    bundle_module._bundles.remove_all()  # what the process's exit does
    assert os.listdir(tmp_path / "rt" / "bundles") == []
