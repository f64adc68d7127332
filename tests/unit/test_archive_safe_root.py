"""SafeRoot keeps every operation inside the root, with openat2 and with the fallback walk."""

from __future__ import annotations

import io
import os
import stat

import pytest

from kiln.archive.safe_root import SafeRoot
from kiln.util.inroot import openat2_available

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


def test_follow_resolves_every_link_in_root_even_a_dangling_last_one(env):
    sr, root, outside = env
    sr.makedirs("data")
    sr.symlink(str(outside), "host")  # an absolute host path means <root>/<that path>
    sr.symlink("/data/w", "app")
    sr.symlink("../../../../data", "rel")
    found = sr.follow("app")
    assert (found.path, found.exists, found.created) == ("/data/w", False, [])
    assert sr.follow("rel/../rel").path == "/data"
    with pytest.raises(FileNotFoundError):
        sr.follow("host/secret")  # never the host's file: <root>/tmp/... is missing
    made = sr.follow("host/secret", create_parents=True)
    assert (made.path, made.exists) == (str(outside) + "/secret", False)
    assert made.created[-1] == str(outside) and (root / str(outside).lstrip("/")).is_dir()


def test_makedirs_following_creates_link_targets_never_replacing_links(env):
    sr, root, outside = env
    sr.symlink("/nowhere/deep", "app")
    sr.symlink(str(outside), "host")
    found = sr.makedirs_following("app/x")
    assert found.path == "/nowhere/deep/x"
    assert found.created == ["/nowhere", "/nowhere/deep", "/nowhere/deep/x"]
    assert os.path.islink(root / "app") and (root / "nowhere/deep/x").is_dir()
    assert sr.makedirs_following("host").path == str(outside)
    assert (root / str(outside).lstrip("/")).is_dir()
    assert sorted(os.listdir(outside)) == ["secret"]
    assert sr.makedirs_following("app/x").created == []


def test_makedirs_following_errors_name_the_path(env):
    sr, root, _ = env
    (root / "file").write_text("x")
    sr.symlink("/file", "to-file")
    sr.symlink("/b", "a")
    sr.symlink("/a", "b")
    with pytest.raises(NotADirectoryError) as exc:
        sr.makedirs_following("to-file/x")
    assert exc.value.filename == "/file"
    with pytest.raises(NotADirectoryError):
        sr.makedirs_following("to-file")
    with pytest.raises(OSError) as loop:
        sr.makedirs_following("a/x")
    assert loop.value.filename in ("/a", "/b")
