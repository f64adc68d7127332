"""``ADD --unpack`` (BuildKit's flag): ``--unpack=false`` copies a local archive as a file;
the flag is read from the Dockerfile as BuildKit reads it (bare, =true, =false)."""

from __future__ import annotations

import gzip
import os

import pytest

from archive_corpus import REG, tar_of
from kiln.build.instructions import Add, instructions_from_nodes
from kiln.build.parser import parse_string
from kiln.container.copy_add import copy_into
from kiln.errors import InvalidArgument


def _archive() -> bytes:
    return gzip.compress(tar_of(("top/file", REG, b"abc")), mtime=0)


@pytest.fixture
def dirs(tmp_path):
    ctx, rootfs = tmp_path / "ctx", tmp_path / "rootfs"
    ctx.mkdir()
    rootfs.mkdir()
    (ctx / "a.tar.gz").write_bytes(_archive())
    return str(ctx), str(rootfs)


def test_unpack_false_copies_a_local_archive_as_a_file(dirs):
    ctx, rootfs = dirs
    copy_into(rootfs, ["a.tar.gz"], "/keep/", context_dir=ctx, add=True, unpack=False)
    with open(f"{rootfs}/keep/a.tar.gz", "rb") as f:
        assert f.read() == _archive()
    assert not os.path.exists(f"{rootfs}/keep/top")


@pytest.mark.parametrize("unpack", [None, True])
def test_a_local_archive_is_unpacked_by_default_and_with_unpack_true(dirs, unpack):
    ctx, rootfs = dirs
    copy_into(rootfs, ["a.tar.gz"], "/out/", context_dir=ctx, add=True, unpack=unpack)
    with open(f"{rootfs}/out/top/file") as f:
        assert f.read() == "abc"


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("", None), ("--unpack ", True), ("--unpack=true ", True), ("--unpack=false ", False)],
)
def test_the_flag_is_read_as_buildkit_reads_it(flag, expected):
    nodes = parse_string(f"FROM x\nADD {flag}a.tar.gz /d/\n").nodes
    add = instructions_from_nodes(nodes)[1]
    assert isinstance(add, Add) and add.unpack is expected


def test_a_nonsense_value_is_refused():
    nodes = parse_string("FROM x\nADD --unpack=maybe a.tar.gz /d/\n").nodes
    with pytest.raises(InvalidArgument):
        instructions_from_nodes(nodes)
