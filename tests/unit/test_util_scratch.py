"""A command's scratch directory: private, named after its process, never one that exists."""

from __future__ import annotations

import os
import stat

import pytest

from kiln.util import scratch
from kiln.util.process_owner import this_process


def test_a_scratch_dir_is_private_new_and_names_its_process(tmp_path):
    base = str(tmp_path / "made" / "on-demand")
    first, second = scratch.make_scratch_dir(base), scratch.make_scratch_dir(base)
    assert first != second
    for path in (first, second):
        assert os.path.dirname(path) == base
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert scratch.scratch_owner(os.path.basename(path)) == this_process()


def test_a_taken_name_is_skipped_and_only_taken_names_fail(tmp_path, monkeypatch):
    draws = iter([b"\0" * 6, b"\0" * 6, b"\1" * 6])
    monkeypatch.setattr(scratch.os, "urandom", lambda n: next(draws))
    taken = scratch.make_scratch_dir(str(tmp_path))
    assert scratch.make_scratch_dir(str(tmp_path)).endswith("-010101010101")
    monkeypatch.setattr(scratch.os, "urandom", lambda n: b"\0" * n)
    with pytest.raises(FileExistsError):
        scratch.make_scratch_dir(str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2 and os.path.isdir(taken)
