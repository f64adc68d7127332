"""COPY/ADD ``--exclude`` on context sources keeps what BuildKit keeps.

BuildKit's copy (tonistiigi/fsutil ``copy.Copy``, called by its file op for each source
after wildcard expansion) matches the patterns against each path relative to the source
it walks, never against the source itself nor its path in the context: an excluded
named file, or a wildcard's match, is copied (moby/buildkit#5489 shows ``COPY
--exclude=a * .`` copying ``a``), and ``src/*.go`` matches nothing below ``src``. With a
``!`` pattern it walks an excluded directory for what comes back, making the directories
on the way. kiln matched the path in the context too: it left files out that BuildKit
copies, and refused a source a pattern named.

The expected lists follow that code and BuildKit's own testExcludedFilesOnCopy; they could
not be checked with a BuildKit build here (the Debian dockerd 20.10's built-in Dockerfile
frontend refuses ``--exclude``: "Unknown flag: exclude", and a newer one is a pull).
"""

from __future__ import annotations

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

CONTEXT = {
    "a.txt": "a",
    "b.txt": "b",
    "src/main.go": "main",
    "src/x.txt": "x",
    "src/sub/y.go": "y",
    "src/sub/keep.go": "keep",
    "src/src/inner.txt": "inner",  # a directory with the source's own name
}

SRC = ["main.go", "src/", "src/inner.txt", "sub/", "sub/keep.go", "sub/y.go", "x.txt"]

# (flags and sources of the COPY to /o, what /o holds)
CASES = {
    # the pattern names the source's path in the context: nothing below src matches it
    "context_path_pattern": ("--exclude=src/*.go src", SRC),
    # a named source is never matched itself
    "named_file_itself": ("--exclude=a.txt a.txt", ["a.txt"]),
    "wildcard_matches_themselves": ("--exclude=a.txt *.txt", ["a.txt", "b.txt"]),
    # relative to src, "src" is only the directory of that name inside it
    "source_dir_own_name": ("--exclude=src src", [p for p in SRC if not p.startswith("src/")]),
    "everything_below": ("--exclude=* src", []),
    "nested_one_level": (
        "--exclude=*/*.go src",
        ["main.go", "src/", "src/inner.txt", "sub/", "x.txt"],
    ),  # fmt: skip
    "reinclude_relative": (
        "--exclude=**/*.go --exclude=!main.go src",
        ["main.go", "src/", "src/inner.txt", "sub/", "x.txt"],
    ),  # fmt: skip
    "reinclude_in_excluded_dir": (
        "--exclude=sub --exclude=!sub/keep.go src",
        ["main.go", "src/", "src/inner.txt", "sub/", "sub/keep.go", "x.txt"],
    ),  # fmt: skip
    # the context's root as the source: relative paths are the context's
    "context_root": (
        "--exclude=src/*.go --exclude=*.txt .",
        [
            "Containerfile",
            "src/",
            "src/src/",
            "src/src/inner.txt",
            "src/sub/",
            "src/sub/keep.go",
            "src/sub/y.go",
            "src/x.txt",
        ],
    ),  # fmt: skip
}


@pytest.mark.parametrize("instruction", ["COPY", "ADD"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_exclude_keeps_what_buildkit_keeps(build_env, case, instruction):  # noqa: F811
    flags, want = CASES[case]
    ctx = build_env.context_dir(files=CONTEXT)
    build_env.build(ctx, f"FROM scratch\n{instruction} {flags} /o/\n", tags=["ex"])
    files = build_env.files("ex")
    got = sorted(p[2:] + ("/" if kind == "dir" else "") for p, kind in files.items()
                 if p.startswith("o/"))  # fmt: skip
    assert got == want


# COPY --parents: BuildKit copies from the pivot (before /./, else the context's root),
# the patterns relative to it
PARENTS = {
    "--exclude=sub/*.go src/./sub": ["sub/"],
    "--exclude=src/sub/y.go src/sub": ["src/", "src/sub/", "src/sub/keep.go"],
}


@pytest.mark.parametrize("flags", sorted(PARENTS))
def test_parents_exclude_is_relative_to_the_pivot(build_env, flags):  # noqa: F811
    ctx = build_env.context_dir(files=CONTEXT)
    build_env.build(ctx, f"FROM scratch\nCOPY --parents {flags} /o/\n", tags=["ex"])
    files = build_env.files("ex")
    got = sorted(p[2:] + ("/" if kind == "dir" else "") for p, kind in files.items()
                 if p.startswith("o/"))  # fmt: skip
    assert got == PARENTS[flags]
