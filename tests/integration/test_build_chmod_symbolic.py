"""``COPY``/``ADD --chmod`` end to end: symbolic modes (BuildKit's Dockerfile 1.14) on files
and trees, and ``ADD --chmod`` for every kind of source — a local file, a directory, a URL,
a heredoc (the mode applies) and a local archive (its entries keep their own modes, as
buildah and BuildKit leave them)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from file_server import serving
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument

pytestmark = ROOT_MARKS


def _modes(build_env, ref: str) -> dict[str, int]:  # noqa: F811
    img = build_env.image(ref)
    out: dict[str, int] = {}
    for desc in img.layers:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for m in tar:
                out[m.name.lstrip("./").rstrip("/")] = m.mode & 0o7777
    return out


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "tool").write_text("#!/bin/sh\n")
    with serving(root) as url:
        yield url


def test_symbolic_chmod_on_files_and_trees(build_env):  # noqa: F811
    ctx = build_env.context_dir(
        files={"run.sh": "x\n", "conf": "c\n", "d/a": "a\n", "d/s/b": "b\n"}
    )
    os.chmod(os.path.join(ctx, "run.sh"), 0o600)
    os.chmod(os.path.join(ctx, "conf"), 0o666)
    os.chmod(os.path.join(ctx, "d", "s"), 0o700)
    os.chmod(os.path.join(ctx, "d", "a"), 0o744)
    build_env.build(
        ctx,
        "FROM busybox\nARG M=go-w\n"
        "COPY --chmod=+x run.sh /run.sh\n"
        "COPY --chmod=$M conf /conf\n"
        "COPY --chmod=u=rwX,go=rX d /d/\n"
        "ADD --chmod=u=rwx,g=rx,o= conf /conf2\n",
        tags=["sym"],
    )
    modes = _modes(build_env, "sym")
    assert modes["run.sh"] == 0o711
    assert modes["conf"] == 0o644
    assert modes["d/s"] == 0o755  # X: a directory
    assert modes["d/a"] == 0o755  # X: already executable
    assert modes["d/s/b"] == 0o644
    assert modes["conf2"] == 0o750


def test_add_chmod_on_every_kind_of_source(build_env, served):  # noqa: F811
    ctx = build_env.context_dir(files={"f": "f\n", "d/x": "x\n"})
    os.chmod(os.path.join(ctx, "f"), 0o600)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("in/tarred")
        info.size, info.mode = 2, 0o604
        tar.addfile(info, io.BytesIO(b"t\n"))
    with open(os.path.join(ctx, "a.tar"), "wb") as f:
        f.write(data.getvalue())
    build_env.build(
        ctx,
        "FROM busybox\n"
        "ADD --chmod=0751 f /f\n"
        "ADD --chmod=g+w d /d/\n"
        f"ADD --chmod=a+rx {served}/tool /tool\n"
        f"ADD --chmod=0700 {served}/tool /tool-octal\n"
        "ADD --chmod=0640 a.tar /x/\n"
        "ADD --chmod=u+x <<EOF /here\nhello\nEOF\n",
        tags=["addchmod"],
    )
    modes = _modes(build_env, "addchmod")
    assert modes["f"] == 0o751
    assert modes["d/x"] == 0o664
    assert modes["tool"] == 0o755  # a download is 0600, then a+rx
    assert modes["tool-octal"] == 0o700
    assert modes["x/in/tarred"] == 0o604  # an archive's entries keep their modes
    assert modes["here"] == 0o744


def test_a_bad_symbolic_chmod_names_the_line(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"f": "f\n"})
    with pytest.raises(InvalidArgument, match=r"^Containerfile:2: invalid chmod parameter: u\+z"):
        build_env.build(ctx, "FROM busybox\nCOPY --chmod=u+z f /f\n")
    with pytest.raises(InvalidArgument, match="^Containerfile:3: invalid chmod parameter: q=r"):
        build_env.build(ctx, "FROM busybox\nARG M=q=r\nCOPY --chmod=$M f /f\n")
