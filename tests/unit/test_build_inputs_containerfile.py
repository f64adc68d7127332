"""Which Containerfile a build reads for -f: as given, then in the context; a pipe too."""

from __future__ import annotations

import os

import pytest

from kiln.errors import InvalidArgument, NotFound
from kiln.ops.build_inputs import find_dockerfile


def test_a_pipe_is_a_containerfile_as_podman_reads_one(tmp_path):
    # `kiln build -f <(generate) ctx`: the shell passes /dev/fd/N, a pipe, not a regular file
    r, w = os.pipe()
    try:
        path = f"/dev/fd/{r}"
        assert find_dockerfile(str(tmp_path), [path]) == [path]
    finally:
        os.close(r)
        os.close(w)


def test_relative_to_the_context_and_the_mistakes(tmp_path, monkeypatch):
    (tmp_path / "Dockerfile.dev").write_text("FROM scratch\n")
    monkeypatch.chdir("/")
    assert find_dockerfile(str(tmp_path), ["Dockerfile.dev"]) == [str(tmp_path / "Dockerfile.dev")]
    with pytest.raises(InvalidArgument, match="is a directory: check -f"):
        find_dockerfile(str(tmp_path), [str(tmp_path)])
    with pytest.raises(NotFound, match="nope does not exist: check -f"):
        find_dockerfile(str(tmp_path), ["nope"])
