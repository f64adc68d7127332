"""A context file is opened by the name it was listed under, without a ``stat`` first: one
swapped after the listing (for a FIFO, a symlink out of the context, a directory) is
refused as a changed source, never followed, never waited on."""

from __future__ import annotations

import os

import pytest

from kiln.container.copy_add import copy_into
from kiln.errors import InvalidArgument

SWAPS = {
    "fifo": lambda path, outside: os.mkfifo(path),
    "symlink out of the context": lambda path, outside: os.symlink(outside, path),
    "directory": lambda path, outside: os.mkdir(path),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_file_swapped_after_the_listing_is_refused(tmp_path, swap):
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "a").write_text("first\n")
    (ctx / "d" / "b").write_text("second\n")
    outside = tmp_path / "secret"
    outside.write_text("not in the context\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    swapped = []

    def known(st, label):
        # asked for "a", after "d" was listed and before "b" is opened: swap "b" now
        if not swapped:
            os.unlink(ctx / "d" / "b")
            SWAPS[swap](str(ctx / "d" / "b"), str(outside))
            swapped.append(True)
        return None

    with pytest.raises(InvalidArgument, match=r"copy source d/b changed while"):
        copy_into(str(rootfs), ["d"], "/dst/", context_dir=str(ctx), known_digest=known)
    assert swapped
    assert (rootfs / "dst" / "a").read_text() == "first\n"
    assert not os.path.lexists(rootfs / "dst" / "b")


def test_listed_files_keep_their_own_metadata(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    f = ctx / "d" / "f"
    f.write_bytes(b"x" * 300)
    os.chmod(f, 0o751)
    os.utime(f, ns=(1_000_000_000, 1_234_567_890_123))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    copy_into(str(rootfs), ["d"], "/dst/", context_dir=str(ctx))
    st = os.lstat(rootfs / "dst" / "f")
    assert (st.st_mode & 0o7777, st.st_mtime_ns, st.st_size) == (0o751, 1_234_567_890_123, 300)
