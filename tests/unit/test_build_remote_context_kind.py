"""Which build contexts are git repositories: the context's quick test for a local path
gives the answer the git source parser gives, for every kind of spec."""

from __future__ import annotations

import pytest

from kiln.build.remote_context import is_git_context, is_remote_context
from kiln.container.git_source import is_git_source

SPECS = [
    ".", "ctx", "/abs/ctx", "./dir.git", "dir.git#main", "-", "C:/x", "git@", "git@host:o/r",
    "git@host:o/r.git#v1:sub", "git://host/r", "ssh://git@host/r.git", "https://host/r.git",
    "https://host/r", "https://host/r#main", "http://host/ctx.tar.gz", "file:///srv/r.git",
    "file:///srv/r", "file:///srv/r#main", "ftp://host/r.git", "github.com/o/r", "x://y#z",
    "git:/nothing", "ssh:/nothing", "git@x", " git@x",
]  # fmt: skip


@pytest.mark.parametrize("spec", SPECS)
def test_a_context_is_git_exactly_when_the_git_parser_says_so(spec):
    assert is_git_context(spec) == is_git_source(spec, local=True)


def test_a_local_directory_is_neither_git_nor_remote():
    assert not is_git_context("/srv/app")
    assert not is_remote_context("/srv/app")
    assert is_remote_context("git@host:o/r") and is_remote_context("-")
