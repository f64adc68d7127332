"""Docker COPY/ADD semantics of ``copy_into`` on plain directories (no mounts)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat

import pytest
import zstandard

from archive_corpus import REG, tar_of
from kiln.container.copy_add import copy_into
from kiln.errors import InvalidArgument, NotFound

ROOT = os.geteuid() == 0


@pytest.fixture
def dirs(tmp_path):
    ctx, rootfs = tmp_path / "ctx", tmp_path / "rootfs"
    (ctx / "d" / "sub").mkdir(parents=True)
    (rootfs / "etc").mkdir(parents=True)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "d" / "sub" / "x").write_text("x\n")
    os.chmod(ctx / "d" / "sub" / "x", 0o751)
    os.utime(ctx / "a.txt", (1_600_000_000, 1_600_000_000))
    os.symlink("a.txt", ctx / "link")
    os.link(ctx / "d" / "sub" / "x", ctx / "d" / "hard")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nbob:x:1000:100::/h:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nusers:x:100:\nstaff:x:50:\n")
    return str(ctx), str(rootfs)


def _read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def _copy(dirs, sources, dest, **kw):
    ctx, rootfs = dirs
    return copy_into(rootfs, sources, dest, context_dir=ctx, **kw)


def test_file_to_file_and_dir(dirs):
    _, rootfs = dirs
    _copy(dirs, ["a.txt"], "/x/y")
    assert _read(f"{rootfs}/x/y") == "a\n"
    assert os.stat(f"{rootfs}/x/y").st_mtime == 1_600_000_000  # mtime kept
    _copy(dirs, ["a.txt"], "/dir/")
    assert os.path.isfile(f"{rootfs}/dir/a.txt")
    _copy(dirs, ["b.txt"], "/dir")  # an existing directory receives the file
    assert os.path.isfile(f"{rootfs}/dir/b.txt")


def test_directory_copies_its_contents(dirs):
    _, rootfs = dirs
    _copy(dirs, ["d"], "/dd")
    assert sorted(os.listdir(f"{rootfs}/dd")) == ["hard", "sub"]
    assert stat.S_IMODE(os.stat(f"{rootfs}/dd/sub/x").st_mode) == 0o751
    st1, st2 = os.stat(f"{rootfs}/dd/sub/x"), os.stat(f"{rootfs}/dd/hard")
    assert st1.st_ino == st2.st_ino  # hard links stay hard links


def test_destination_directory_a_copy_creates_is_0755(dirs):
    """buildah: the source directory's mode and --chmod apply to what is inside, not to the
    destination directory the copy makes; an existing destination keeps its mode."""
    ctx, rootfs = dirs
    os.chmod(f"{ctx}/d", 0o711)
    os.chmod(f"{ctx}/d/sub", 0o750)
    _copy(dirs, ["d"], "/plain")
    _copy(dirs, ["d"], "/chmodded", chmod="600")
    os.mkdir(f"{rootfs}/kept", 0o700)
    _copy(dirs, ["d"], "/kept")
    mode = lambda p: stat.S_IMODE(os.stat(f"{rootfs}{p}").st_mode)  # noqa: E731
    assert mode("/plain") == mode("/chmodded") == 0o755
    assert mode("/plain/sub") == 0o750 and mode("/chmodded/sub") == 0o600
    assert mode("/chmodded/sub/x") == 0o600
    assert mode("/kept") == 0o700


def test_symlink_source_is_followed(dirs):
    _, rootfs = dirs
    _copy(dirs, ["link"], "/l")
    assert not os.path.islink(f"{rootfs}/l") and _read(f"{rootfs}/l") == "a\n"


def test_wildcards_and_multiple_sources(dirs):
    _, rootfs = dirs
    out = _copy(dirs, ["*.txt"], "/many/")
    assert sorted(os.listdir(f"{rootfs}/many")) == ["a.txt", "b.txt"]
    assert out.digest.startswith("sha256:")
    # several matches into a destination without a slash: a directory holding them all
    _copy(dirs, ["*.txt"], "/several")
    assert sorted(os.listdir(f"{rootfs}/several")) == ["a.txt", "b.txt"]


def test_digest_depends_on_content(dirs):
    ctx, _ = dirs
    first = _copy(dirs, ["a.txt"], "/q").digest
    assert _copy(dirs, ["a.txt"], "/q2").digest == first
    with open(f"{ctx}/a.txt", "w") as f:
        f.write("changed\n")
    assert _copy(dirs, ["a.txt"], "/q").digest != first


def test_chmod_and_chown(dirs):
    _, rootfs = dirs
    _copy(dirs, ["d"], "/m", chmod="640")
    assert stat.S_IMODE(os.stat(f"{rootfs}/m/sub/x").st_mode) == 0o640
    if ROOT:
        _copy(dirs, ["a.txt"], "/o/", chown="bob:staff")
        st = os.stat(f"{rootfs}/o/a.txt")
        assert (st.st_uid, st.st_gid) == (1000, 50)
        assert os.stat(f"{rootfs}/o").st_uid == 1000  # created parents belong to the user
        _copy(dirs, ["a.txt"], "/o2", chown="bob")
        assert os.stat(f"{rootfs}/o2").st_gid == 100  # a name takes its primary group
        _copy(dirs, ["a.txt"], "/o3", chown="7")
        assert (os.stat(f"{rootfs}/o3").st_uid, os.stat(f"{rootfs}/o3").st_gid) == (7, 7)


@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_keep_owner_keeps_source_ids_as_copy_from(dirs):
    """COPY --from (as buildah): entries keep uid/gid and mode; what the copy creates is 0:0."""
    ctx, rootfs = dirs
    os.chmod(f"{ctx}/d/sub", 0o750)
    for path in ("d", "d/sub", "d/sub/x", "d/hard"):
        os.chown(f"{ctx}/{path}", 1000, 1000)
    os.lchown(f"{ctx}/link", 1001, 1002)
    os.symlink("sub/x", f"{ctx}/d/sl")
    os.lchown(f"{ctx}/d/sl", 1001, 1002)
    os.chown(f"{ctx}/a.txt", 1003, 1004)
    _copy(dirs, ["d"], "/new/deep/", keep_owner=True)
    _copy(dirs, ["d/sub/x"], "/single", keep_owner=True)
    _copy(dirs, ["link"], "/ln/", keep_owner=True)
    ids = lambda p: (os.lstat(f"{rootfs}{p}").st_uid, os.lstat(f"{rootfs}{p}").st_gid)  # noqa: E731
    assert ids("/new/deep/sub") == ids("/new/deep/sub/x") == ids("/single") == (1000, 1000)
    assert stat.S_IMODE(os.stat(f"{rootfs}/new/deep/sub").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(f"{rootfs}/single").st_mode) == 0o751
    assert ids("/new/deep/sl") == (1001, 1002)  # symlinks inside keep theirs
    assert ids("/new") == ids("/new/deep") == (0, 0)  # parents and the top dir it made
    assert ids("/ln/link") == (1003, 1004)  # a top-level symlink is followed: its target's
    _copy(dirs, ["d/sub/x"], "/chowned", keep_owner=True, chown="7:8")
    assert ids("/chowned") == (7, 8)  # --chown wins
    _copy(dirs, ["d/sub/x"], "/plain")
    assert ids("/plain") == (0, 0)  # COPY from the context: 0:0


@pytest.mark.parametrize("spec", ["nobody", "bob:nogroup", "a:b:c", ""])
def test_unknown_chown_changes_nothing(dirs, spec):
    _, rootfs = dirs
    before = sorted(os.listdir(rootfs))
    with pytest.raises(InvalidArgument):
        _copy(dirs, ["a.txt"], "/new/", chown=spec or ":")
    assert sorted(os.listdir(rootfs)) == before


def test_bad_sources(dirs):
    _, rootfs = dirs
    with pytest.raises(NotFound):
        _copy(dirs, ["a.txt", "missing"], "/z/")
    assert not os.path.exists(f"{rootfs}/z")  # nothing written before the check failed
    with pytest.raises(NotFound):  # the context's rootfs/etc/passwd, never the one beside it
        _copy(dirs, ["../rootfs/etc/passwd"], "/z")
    with pytest.raises(InvalidArgument, match="URL"):
        _copy(dirs, ["http://127.0.0.1:1/x"], "/z")
    with pytest.raises(InvalidArgument):
        _copy(dirs, ["a.txt"], "/x", chmod="999")


def test_dest_escaping_root_stays_inside(dirs, tmp_path):
    _, rootfs = dirs
    os.symlink("/", f"{rootfs}/up")
    os.symlink("../../..", f"{rootfs}/rel")
    _copy(dirs, ["a.txt"], "/up/tmp-escape-check/")
    _copy(dirs, ["a.txt"], "/rel/escape2")
    _copy(dirs, ["a.txt"], "../../../escape3")
    assert os.path.isfile(f"{rootfs}/tmp-escape-check/a.txt")
    assert os.path.isfile(f"{rootfs}/escape2")
    assert os.path.isfile(f"{rootfs}/escape3")
    assert not os.path.exists("/tmp-escape-check")
    assert not (tmp_path / "escape2").exists()


@pytest.mark.parametrize(
    "kind",
    ["tar", "gz", "bz2", "xz", "zst"],
)
def test_add_extracts_local_archives(dirs, kind):
    ctx, rootfs = dirs
    raw = tar_of(("top/file", REG, b"abc"))
    data = {
        "tar": raw,
        "gz": gzip.compress(raw),
        "bz2": bz2.compress(raw),
        "xz": lzma.compress(raw),
        "zst": zstandard.ZstdCompressor().compress(raw),
    }[kind]
    with open(f"{ctx}/arch.bin", "wb") as f:  # detected by content, not by name
        f.write(data)
    _copy(dirs, ["arch.bin"], "/opt", add=True)
    assert _read(f"{rootfs}/opt/top/file") == "abc"
    _copy(dirs, ["arch.bin"], "/copied")  # COPY never extracts
    assert _read(f"{rootfs}/copied", "rb") == data


def test_add_plain_file_and_compressed_non_tar(dirs):
    ctx, rootfs = dirs
    with open(f"{ctx}/notatar.gz", "wb") as f:
        f.write(gzip.compress(b"just text"))
    _copy(dirs, ["notatar.gz", "a.txt"], "/addd/", add=True)
    assert sorted(os.listdir(f"{rootfs}/addd")) == ["a.txt", "notatar.gz"]
