"""A COPY written straight from the context (``kiln.build.copy_direct``) holds one
directory's listing at a time, not the whole tree's: its peak memory, listing and writing
the layer's entries, does not grow with the number of files (at 200,000 files the whole
listing cost ~150 MB more). Also what the copy asks the build context for: a file's known
digest is looked up by its path, without a map of every file."""

from __future__ import annotations

import os
import tracemalloc

from kiln.build.context import BuildContext
from kiln.build.copy_direct import plan_direct
from kiln.build.instructions import Copy

PER_DIR = 500


def _context(root, count: int) -> None:
    for i in range(count):
        d = root / "files" / f"d{i // PER_DIR:03d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06d}").write_bytes(b"x" * 16)


def _peak(tmp_path, count: int) -> tuple[int, int]:
    """(peak bytes traced while planning and reading every entry, entries read)."""
    ctx = tmp_path / f"ctx{count}"
    view = tmp_path / f"view{count}"
    view.mkdir()
    _context(ctx, count)
    instr = Copy(line=1, original="COPY files /files", sources=("files",), dest="/files")
    with BuildContext(str(ctx)) as context:
        context.racy_ns = 0  # files made just now: their digests are trusted all the same
        context.digest(["files"])  # the cache key's digest, as a build takes it first
        tracemalloc.start()
        try:
            layer = plan_direct(str(view), str(ctx), instr, workdir="/",
                                known_digest=context.known_digest, include=None)  # fmt: skip
            assert layer is not None
            read = sum(1 for _ in layer.entries)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, read


def test_direct_copy_memory_does_not_grow_with_the_files(tmp_path):
    small, read_small = _peak(tmp_path, 2 * PER_DIR)
    big, read_big = _peak(tmp_path, 16 * PER_DIR)
    assert read_small == 2 * PER_DIR + 2 + 1  # the files, their directories, /files
    assert read_big == 16 * PER_DIR + 16 + 1
    # 7,000 files more: the whole listing held was ~600 B a file (4 MB); one directory's
    # at a time leaves a few bytes a file of slack (the copier's hard-link map, none here)
    per_file = (big - small) / (read_big - read_small)
    assert per_file < 40, f"{per_file:.0f} B more a file ({small} -> {big} B peak)"


def test_a_known_digest_is_found_by_the_path_the_copy_names(tmp_path):
    _context(tmp_path, 3)
    with BuildContext(str(tmp_path)) as context:
        context.racy_ns = 0
        context.digest(["files"])
        st = os.stat(tmp_path / "files" / "d000" / "f000001")
        found = context.known_digest(st, "files/d000/f000001")
        assert found is not None and len(found) == 64
        assert context.known_digest(st, "./files/d000/f000001") == found  # COPY . /x
        assert context.known_digest(st, "files/d000/f000002") is None  # another file's stat
