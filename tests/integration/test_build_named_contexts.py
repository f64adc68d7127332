"""`--build-context NAME=VALUE`: extra named contexts for FROM, COPY --from and RUN --mount from=.

buildah's order: a named context wins over a stage and an image of the same name. A named
directory is read as the main context is (in-root; its symlinks never lead out).
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from file_server import serving
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument, NotFound

pytestmark = ROOT_MARKS


@pytest.fixture
def other(tmp_path):
    d = tmp_path / "other"
    (d / "sub").mkdir(parents=True)
    (d / "f.txt").write_text("from the other context\n")
    (d / "sub" / "g.txt").write_text("g\n")
    return d


def test_copy_from_a_named_directory_wins_over_a_stage_of_that_name(build_env, other):  # noqa: F811
    ctx = build_env.context_dir(files={"f.txt": "main\n"})
    text = (
        "FROM busybox AS other\nRUN echo stage > /f.txt\n"
        "FROM busybox\nCOPY --from=other f.txt /f.txt\nCOPY --from=other sub /sub/\n"
        "COPY f.txt /main.txt\n"
    )
    build_env.build(ctx, text, tags=["nc"], build_contexts={"other": str(other)})
    files = build_env.files("nc")
    assert files["f.txt"] == b"from the other context\n"
    assert files["sub/g.txt"] == b"g\n"
    assert files["main.txt"] == b"main\n"


def test_copy_from_a_named_directory_is_cached_by_its_content(build_env, other):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nCOPY --from=other f.txt /f.txt\n"
    named = {"other": str(other)}
    first = build_env.build(ctx, text, build_contexts=named)
    assert build_env.build(ctx, text, build_contexts=named).image_id == first.image_id
    (other / "f.txt").write_text("changed\n")
    second = build_env.build(ctx, text, tags=["changed"], build_contexts=named)
    assert second.image_id != first.image_id
    assert build_env.files("changed")["f.txt"] == b"changed\n"


def test_from_and_copy_from_a_named_image(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = (
        "FROM base\nCOPY --from=tools /bin/busybox /copied-busybox\nRUN test -x /copied-busybox\n"
    )
    named = {"base": "container-image://busybox", "tools": "docker-image://busybox"}
    build_env.build(ctx, text, tags=["img"], build_contexts=named)
    assert "copied-busybox" in build_env.files("img")


def test_run_mount_from_a_named_directory(build_env, other):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nRUN --mount=from=other,target=/m cat /m/f.txt > /seen\n"
    build_env.build(ctx, text, tags=["mnt"], build_contexts={"other": str(other)})
    assert build_env.files("mnt")["seen"] == b"from the other context\n"


def test_a_named_directorys_link_out_is_not_followed(build_env, other, tmp_path):  # noqa: F811
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    os.symlink(str(secret), other / "leak")
    os.symlink("../host-secret", other / "leak2")
    ctx = build_env.context_dir()
    for src in ("leak", "leak2"):  # named: followed as if the context were /, to nothing
        text = f"FROM busybox\nCOPY --from=other {src} /x\n"
        with pytest.raises(NotFound, match="resolves to nothing inside the build context"):
            build_env.build(ctx, text, build_contexts={"other": str(other)})
    # met in a walk: copied as the link it is
    build_env.build(ctx, "FROM busybox\nCOPY --from=other . /all/\n", tags=["walk"],
                    build_contexts={"other": str(other)})  # fmt: skip
    assert b"host only" not in build_env.layer_bytes("walk")
    assert build_env.files("walk")["all/leak"] == "other"  # a symlink, not the file


def test_a_named_tar_url(build_env, tmp_path):  # noqa: F811
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from the url\n"
        info = tarfile.TarInfo("u.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (served / "ctx.tar").write_bytes(buf.getvalue())
    with serving(served) as base:
        ctx = build_env.context_dir()
        build_env.build(
            ctx, "FROM busybox\nCOPY --from=remote u.txt /u.txt\n", tags=["url"],
            build_contexts={"remote": f"{base}/ctx.tar"},
        )  # fmt: skip
    assert build_env.files("url")["u.txt"] == b"from the url\n"


@pytest.mark.parametrize(
    ("named", "text", "message"),
    [
        ({"d": "/no/such/dir"}, "FROM busybox\n", "no such directory"),
        ({"d": "ftp://x/y"}, "FROM busybox\n", "unknown kind of context"),
        ({"d": "container-image://"}, "FROM busybox\n", "the image is missing"),
        # a git context is cloned (test_build_add_git.py); a ref git would read as an option
        # is refused before git runs
        (
            {"d": "https://example.invalid/r.git#--upload-pack=x"},
            "FROM busybox\n",
            "starts with '-'",
        ),  # fmt: skip
        ({"d": "DIR"}, "FROM d\n", "FROM needs an image"),
    ],
)
def test_bad_named_contexts(build_env, other, named, text, message):  # noqa: F811
    named = {k: (str(other) if v == "DIR" else v) for k, v in named.items()}
    with pytest.raises(InvalidArgument, match=message):
        build_env.build(build_env.context_dir(), text, build_contexts=named)


def test_cli_flag(build_env, other):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nCOPY --from=o f.txt /\n"})
    env = dict(os.environ, KILN_ROOT=build_env.store.root)
    run = functools.partial(
        subprocess.run, capture_output=True, text=True, env=env, timeout=300
    )  # fmt: skip
    ok = run([sys.executable, "-m", "kiln.cli.main", "build", "-t", "cli",
              "--build-context", f"o={other}", ctx])  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = run([sys.executable, "-m", "kiln.cli.main", "build", "--build-context", "novalue", ctx])
    assert bad.returncode == 125
    assert "use NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr
