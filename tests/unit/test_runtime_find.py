"""kiln.runtime.runc.find_runtime: the runtime named on the search path; a name found
before is not searched for again while its binary is still there."""

from __future__ import annotations

import os

import pytest

from kiln.errors import Unavailable
from kiln.runtime import runc


def _binary(directory, name: str = "kiln-test-runtime") -> str:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_a_found_runtime_is_not_searched_for_again_while_it_is_there(tmp_path, monkeypatch):
    first, second = _binary(tmp_path / "a"), _binary(tmp_path / "b")
    monkeypatch.setenv("PATH", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    searches = []
    real = runc.shutil.which
    monkeypatch.setattr(runc.shutil, "which", lambda *a, **kw: searches.append(a) or real(*a, **kw))
    assert runc.find_runtime("kiln-test-runtime") == first
    assert runc.find_runtime("kiln-test-runtime") == first
    assert len(searches) == 1
    os.unlink(first)  # gone: searched again, the next one on the path is found
    assert runc.find_runtime("kiln-test-runtime") == second
    assert len(searches) == 2
    os.unlink(second)
    with pytest.raises(Unavailable, match="not found"):
        runc.find_runtime("kiln-test-runtime")


def test_another_search_path_is_searched(tmp_path, monkeypatch):
    first, second = _binary(tmp_path / "a"), _binary(tmp_path / "b")
    monkeypatch.setenv("PATH", str(tmp_path / "a"))
    assert runc.find_runtime("kiln-test-runtime") == first
    monkeypatch.setenv("PATH", str(tmp_path / "b"))
    assert runc.find_runtime("kiln-test-runtime") == second
