"""SafeRoot keeps every operation inside the root, with openat2 and with the fallback walk."""

from __future__ import annotations

import io
import os
import stat

import pytest

from kiln.archive.safe_root import SafeRoot, openat2_available

MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]


@pytest.fixture(params=MODES)
def env(request, tmp_path):
    if request.param and not openat2_available():
        pytest.skip("no openat2 on this kernel")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    with SafeRoot(str(root), use_openat2=request.param) as sr:
        yield sr, root, outside


def test_absolute_symlink_resolves_in_root(env):
    sr, root, outside = env
    sr.symlink(str(outside), "abs")
    sr.makedirs("abs/sub")
    sr.write_file("abs/sub/f", io.BytesIO(b"data"), 0o640)
    assert (root / str(outside).lstrip("/") / "sub" / "f").read_bytes() == b"data"
    assert sorted(os.listdir(outside)) == ["secret"]


def test_dotdot_and_relative_links_clamp_at_root(env):
    sr, root, outside = env
    sr.symlink("../../../../outside", "rel")
    sr.makedirs("rel")
    sr.write_file("rel/secret", io.BytesIO(b"mine"), 0o600)
    sr.write_file("../../x", io.BytesIO(b"x"), 0o600)
    assert (root / "outside" / "secret").read_bytes() == b"mine"
    assert (root / "x").exists()
    assert (outside / "secret").read_text() == "secret"


def test_final_symlink_is_replaced_not_followed(env):
    sr, root, outside = env
    sr.symlink(str(outside / "secret"), "f")
    sr.write_file("f", io.BytesIO(b"new"), 0o644)
    assert (root / "f").read_bytes() == b"new" and not (root / "f").is_symlink()
    sr.symlink(str(outside / "secret"), "g")
    sr.chmod("g", 0o777)
    sr.utime("g", 0, 0)
    sr.chown("g", os.getuid(), os.getgid())
    sr.remove("g")
    assert (outside / "secret").read_text() == "secret"
    assert stat.S_IMODE(os.stat(outside / "secret").st_mode) != 0o777


def test_links_nodes_and_removal(env):
    sr, root, outside = env
    sr.makedirs("a/b/c", 0o700)
    sr.write_file("a/b/c/f", io.BytesIO(b"1"), 0o4755)
    assert stat.S_IMODE(os.stat(root / "a/b/c/f").st_mode) == 0o4755
    sr.hardlink("a/b/c/f", "h")
    assert os.stat(root / "h").st_ino == os.stat(root / "a/b/c/f").st_ino
    sr.mkfifo("fifo")
    assert stat.S_ISFIFO(sr.lstat("fifo").st_mode)
    sr.setxattr("h", "user.k", b"v")
    assert sr.getxattr("a/b/c/f", "user.k") == b"v"
    sr.symlink("/", "up")
    sr.remove("up/a")  # through an in-root symlink: removes <root>/a
    assert not sr.exists("a") and sr.exists("h")
    assert os.listdir(outside) == ["secret"]


def test_symlink_loop_is_an_error(env):
    sr, _, _ = env
    sr.symlink("loop", "loop")
    with pytest.raises(OSError):
        sr.makedirs("loop/x")
