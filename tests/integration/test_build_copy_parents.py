"""``COPY --parents`` end to end, on the documented examples of BuildKit's Dockerfile
reference (neither buildah 1.28 nor BuildKit 20.10 has the flag): parents kept, ``/./``
pivots, ``**``, directories, ``.dockerignore``, ``--from`` with owners and modes."""

from __future__ import annotations

import os
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import NotFound

pytestmark = ROOT_MARKS


def _entries(build_env, ref: str) -> dict[str, tuple[int, int, int]]:  # noqa: F811
    """path -> (mode, uid, gid) of every entry the image's layers hold (last wins)."""
    img = build_env.image(ref)
    out = {}
    for desc in img.layers:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for m in tar:
                out[m.name.lstrip("./").rstrip("/")] = (m.mode & 0o7777, m.uid, m.gid)
    return out


def _under(entries: dict, top: str) -> set[str]:
    return {p for p in entries if p == top or p.startswith(top + "/")}


def test_parents_pivot_and_double_star(build_env):  # noqa: F811
    ctx = build_env.context_dir(
        files={
            "x/a.txt": "xa", "y/a.txt": "ya", "x/y/a.txt": "xya", "x/y/b.txt": "xyb",
            "x/y/c.md": "no", "src/a.txt": "1", "src/x/b.txt": "2", "src/x/y/c.txt": "3",
            "src/x/y/d.go": "no", "tree/sub/f": "f", "tree/g": "g", "skip/me.txt": "ignored",
        }
    )  # fmt: skip
    os.chmod(os.path.join(ctx, "src", "x"), 0o750)
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write("skip\n")
    build_env.build(
        ctx,
        "FROM busybox\n"
        "COPY ./x/a.txt ./y/a.txt /no_parents/\n"
        "COPY --parents ./x/a.txt ./y/a.txt /parents/\n"
        "COPY --parents ./x/./y/*.txt /pivot/\n"
        "COPY --parents ./src/**/*.txt /star/\n"
        "COPY --parents tree /dirs\n"
        "COPY --parents */*.txt /top/\n",
        tags=["parents"],
    )
    e = _entries(build_env, "parents")
    files = build_env.files("parents")
    assert _under(e, "no_parents") == {"no_parents", "no_parents/a.txt"}
    assert _under(e, "parents") == {"parents", "parents/x", "parents/x/a.txt", "parents/y",
                                    "parents/y/a.txt"}  # fmt: skip
    assert files["parents/x/a.txt"] == b"xa" and files["parents/y/a.txt"] == b"ya"
    assert _under(e, "pivot") == {"pivot", "pivot/y", "pivot/y/a.txt", "pivot/y/b.txt"}
    assert _under(e, "star") == {"star", "star/src", "star/src/a.txt", "star/src/x",
                                 "star/src/x/b.txt", "star/src/x/y", "star/src/x/y/c.txt"}  # fmt: skip
    assert e["star/src/x"][0] == 0o750  # a parent keeps its own mode
    assert _under(e, "dirs") == {"dirs", "dirs/tree", "dirs/tree/sub", "dirs/tree/sub/f",
                                 "dirs/tree/g"}  # fmt: skip
    # .dockerignore hides skip/ from the wildcard
    assert _under(e, "top") == {"top", "top/x", "top/x/a.txt", "top/y", "top/y/a.txt",
                                "top/src", "top/src/a.txt"}  # fmt: skip


def test_parents_from_a_stage_keeps_owners_and_takes_chmod(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        "FROM busybox AS src\n"
        "RUN mkdir -p /opt/app/lib/deep && echo so > /opt/app/lib/deep/x.so && "
        "echo no > /opt/app/lib/other && chown -R 7:8 /opt/app && chmod 0710 /opt/app/lib\n"
        "FROM busybox\n"
        "COPY --parents --from=src /opt/./app/lib/**/*.so /out/\n"
        "COPY --parents --from=src --chmod=go-rwx /opt/app/lib/deep /m/\n",
        tags=["pfrom"],
    )
    e = _entries(build_env, "pfrom")
    assert _under(e, "out") == {"out", "out/app", "out/app/lib", "out/app/lib/deep",
                                "out/app/lib/deep/x.so"}  # fmt: skip
    assert e["out/app/lib"] == (0o710, 7, 8)
    assert e["out/app/lib/deep/x.so"][1:] == (7, 8)
    assert e["m/opt/app/lib/deep/x.so"][0] == 0o600
    assert e["m/opt/app/lib"][0] == 0o700


def test_parents_from_a_stage_takes_exclude(build_env):  # noqa: F811
    """``--exclude`` filters a ``--parents --from`` copy as it filters one from the context
    (each match's tree, ``!`` re-includes; a match the patterns name is no match): kiln
    copied everything."""
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        "FROM busybox AS src\n"
        "RUN mkdir -p /opt/app/lib/deep /opt/app/doc && echo so > /opt/app/lib/deep/x.so && "
        "echo a > /opt/app/lib/deep/a.o && echo k > /opt/app/lib/deep/keep.o && "
        "echo d > /opt/app/doc/d.md && echo r > /opt/app/README.md\n"
        "FROM busybox\n"
        "COPY --parents --from=src --exclude=**/*.o --exclude=!**/keep.o /opt/./app/lib /out/\n"
        "COPY --parents --from=src --exclude=opt/app/doc /opt/./app/* /top/\n",
        tags=["pexcl"],
    )
    e = _entries(build_env, "pexcl")
    assert _under(e, "out") == {"out", "out/app", "out/app/lib", "out/app/lib/deep",
                                "out/app/lib/deep/x.so", "out/app/lib/deep/keep.o"}  # fmt: skip
    assert _under(e, "top") == {"top", "top/app", "top/app/README.md", "top/app/lib",
                                "top/app/lib/deep", "top/app/lib/deep/x.so",
                                "top/app/lib/deep/a.o", "top/app/lib/deep/keep.o"}  # fmt: skip


def test_parents_missing_source_and_cache(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"a/f": "1"})
    with pytest.raises(NotFound, match="no such file"):
        build_env.build(ctx, "FROM busybox\nCOPY --parents a/missing /d/\n")
    text = "FROM busybox\nCOPY --parents a/* /d/\n"
    first = build_env.build(ctx, text)
    assert build_env.build(ctx, text).image_id == first.image_id
    with open(os.path.join(ctx, "a", "g"), "w") as f:
        f.write("new")
    changed = build_env.build(ctx, text)
    assert changed.image_id != first.image_id
    assert build_env.files(changed.image_id)["d/a/g"] == b"new"
