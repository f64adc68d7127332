"""A COPY filtered by .dockerignore or --exclude reads the context through the set of what it
may copy: the image holds exactly that, and no context file is touched on the way (hard
links in a staging tree moved every file's ctime, so each rebuild read and hashed the whole
context again)."""

from __future__ import annotations

import os

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build import context as context_module
from kiln.build.context import BuildContext

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox
COPY . /all/
COPY *.log /logs/
COPY --exclude=*.txt sub /sub
"""


def _context(build_env):  # noqa: F811
    ctx = build_env.context_dir(
        files={
            "a.txt": "a",
            "b.log": "b",
            "keep.log": "keep",
            "sub/c.txt": "c",
            "sub/d.log": "d",
            "sub/deep/e.bin": "e",
            "secret/x": "x",
            "secret/pub.txt": "pub",
        }
    )
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write("*.log\n!keep.log\nsecret\n!secret/pub.txt\nsub/*.log\n")
    os.symlink("a.txt", os.path.join(ctx, "lnk"))
    os.mkfifo(os.path.join(ctx, "pipe"))  # a fifo in a context is never copied
    return ctx


def _ctimes(root: str) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name == "Containerfile":  # build_env.build writes it for every build
                continue
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = os.lstat(path).st_ctime_ns
    return out


@pytest.fixture
def reads(monkeypatch):
    """The context files hashed (read) while building."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)  # the files were written just now
    seen: list[str] = []
    real = BuildContext._hash_file

    def spy(self, rel, *args, **kwargs):
        seen.append(rel)
        return real(self, rel, *args, **kwargs)

    monkeypatch.setattr(BuildContext, "_hash_file", spy)
    return seen


def test_filtered_copy_holds_what_the_ignore_file_lets_through(build_env, reads):  # noqa: F811
    ctx = _context(build_env)
    build_env.build(ctx, DOCKERFILE, tags=["ignored"])
    files = build_env.files("ignored")
    build_env.validate("ignored")
    copied = {p.removeprefix("all/") for p in files if p.startswith("all/")}
    assert copied == {"a.txt", "keep.log", "lnk", "sub", "sub/c.txt", "sub/deep",
                      "sub/deep/e.bin", "secret", "secret/pub.txt", "Containerfile",
                      ".dockerignore"}  # fmt: skip
    assert files["all/secret/pub.txt"] == b"pub"
    assert {p for p in files if p.startswith("logs/")} == {"logs/keep.log"}
    assert {p for p in files if p.startswith("sub/")} == {"sub/deep", "sub/deep/e.bin"}


def test_a_filtered_copy_leaves_the_context_untouched_and_its_checksums_good(
    build_env,  # noqa: F811
    reads,
):
    ctx = _context(build_env)
    before = _ctimes(ctx)
    build_env.build(ctx, DOCKERFILE, tags=["first"], timestamp=0)
    assert _ctimes(ctx) == before  # no hard link was made to any context file
    hashed = len(reads)
    assert "a.txt" in reads and "sub/deep/e.bin" in reads
    build_env.build(ctx, DOCKERFILE, tags=["second"], no_cache=True, timestamp=0)
    # every checksum still good: nothing but the rewritten Containerfile read again
    assert set(reads[hashed:]) <= {"Containerfile"}
    assert build_env.image("first").id == build_env.image("second").id
