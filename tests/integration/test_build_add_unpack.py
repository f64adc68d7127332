"""``ADD --unpack`` in a build, as BuildKit documents it: ``--unpack=true`` extracts a
downloaded archive (``--checksum`` too); without it a URL's archive stays a file; and
``--unpack=false`` keeps a local archive whole. It was parsed and ignored before."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from file_server import serving
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS


def archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/VERSION")
        info.size, info.mode = 4, 0o640
        tar.addfile(info, io.BytesIO(b"1.2\n"))
    return gzip.compress(buf.getvalue(), mtime=0)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "pkg.tar.gz").write_bytes(archive())
    (root / "plain.txt").write_text("plain\n")
    with serving(root) as url:
        yield url


def test_unpack_true_extracts_a_downloaded_archive(build_env, served):  # noqa: F811
    digest = hashlib.sha256(archive()).hexdigest()
    ctx = build_env.context_dir()
    text = (
        "FROM busybox\n"
        f"ADD --unpack=true {served}/pkg.tar.gz /unpacked/\n"
        f"ADD --unpack --checksum=sha256:{digest} {served}/pkg.tar.gz /pinned/\n"
        f"ADD {served}/pkg.tar.gz /default/\n"
        f"ADD --unpack=true {served}/plain.txt /notarchive/\n"
    )
    out = build_env.build(ctx, text)
    files = build_env.files(out.image_id)
    assert files["unpacked/pkg/VERSION"] == b"1.2\n"
    assert "unpacked/pkg.tar.gz" not in files
    assert files["pinned/pkg/VERSION"] == b"1.2\n"
    assert files["default/pkg.tar.gz"] == archive(), "a URL's archive is a file by default"
    assert files["notarchive/plain.txt"] == b"plain\n"


def test_unpack_false_keeps_a_local_archive_whole(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with open(f"{ctx}/local.tar.gz", "wb") as f:
        f.write(archive())
    text = "FROM busybox\nADD --unpack=false local.tar.gz /kept/\nADD local.tar.gz /out/\n"
    out = build_env.build(ctx, text)
    files = build_env.files(out.image_id)
    assert files["kept/local.tar.gz"] == archive()
    assert files["out/pkg/VERSION"] == b"1.2\n"
