"""``verify_layer_dir``: an unpacked layer directory against its layer tar, entry by entry."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from kiln.archive.applier import apply_layer
from kiln.snapshot.verify import verify_layer_dir


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("a/b/file", b"hello"), ("top", b"12345")):
            info = tarfile.TarInfo(name)  # no entries for a/ and a/b/: implicit parents
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../top"
        tar.addfile(link)
        hard = tarfile.TarInfo("hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "top"
        tar.addfile(hard)
        d = tarfile.TarInfo("emptydir")
        d.type, d.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(d)
    return buf.getvalue()


@pytest.fixture
def unpacked(tmp_path):
    fs = tmp_path / "fs"
    fs.mkdir()
    apply_layer(io.BytesIO(_layer()), str(fs), whiteouts="overlay")
    return fs


def _verify(fs):
    return verify_layer_dir(str(fs), io.BytesIO(_layer()))


def test_an_intact_layer_matches_and_its_diff_id_is_the_tars(unpacked):
    verdict = _verify(unpacked)
    assert verdict.problems == []
    assert verdict.diff_id == "sha256:" + hashlib.sha256(_layer()).hexdigest()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda fs: (fs / "top").write_bytes(b"54321"), "/top: content differs"),
        (lambda fs: (fs / "top").write_bytes(b"1234"), "/top: size 4"),
        (lambda fs: (fs / "a" / "b" / "file").unlink(), "/a/b/file: missing (file)"),
        (lambda fs: (fs / "extra").write_bytes(b""), "/extra: not in the layer (file)"),
        (lambda fs: os.chmod(fs / "top", 0o600), "/top: mode/owner 600 0:0, the layer has 640"),
        (lambda fs: ((fs / "a" / "link").unlink(), (fs / "a" / "link").symlink_to("/etc")),
         "/a/link: points to '/etc'"),
        (lambda fs: os.rmdir(fs / "emptydir"), "/emptydir: missing (dir)"),
    ],
)  # fmt: skip
def test_each_damage_is_named(unpacked, damage, expected):
    if expected.startswith("/top: mode") and os.geteuid() != 0:
        pytest.skip("the layer's owner 0:0 is kept only as root")
    damage(unpacked)
    problems = _verify(unpacked).problems
    assert any(p.startswith(expected) for p in problems), problems
