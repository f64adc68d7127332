"""User resolution from a container's own /etc/passwd and /etc/group."""

import os

import pytest

from kiln.errors import InvalidArgument
from kiln.runtime import resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
appgrp:x:1001:
wheel:x:10:app,other
docker:x:999:app
"""


@pytest.fixture
def rootfs(tmp_path):
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    return str(tmp_path / "rootfs")


def test_default_is_root(rootfs):
    u = resolve_user(rootfs, "")
    assert (u.uid, u.gid, u.home) == (0, 0, "/root")


def test_named_user_gets_primary_and_supplementary_groups(rootfs):
    u = resolve_user(rootfs, "app")
    assert (u.uid, u.gid, u.home) == (1000, 1001, "/home/app")
    assert set(u.additional_gids) == {1001, 10, 999}  # buildah: the primary group too


def test_numeric_uid_uses_passwd_gid(rootfs):
    assert resolve_user(rootfs, "1000").gid == 1001


def test_numeric_uid_without_entry_gets_gid_zero(rootfs):
    u = resolve_user(rootfs, "4242")
    assert (u.uid, u.gid, u.home, u.additional_gids) == (4242, 0, "/", (0,))


def test_uid_and_gid(rootfs):
    u = resolve_user(rootfs, "1000:1000")
    assert (u.uid, u.gid) == (1000, 1000)


def test_name_and_group_name(rootfs):
    u = resolve_user(rootfs, "app:wheel")
    assert (u.uid, u.gid) == (1000, 10)
    assert u.additional_gids == (10,)  # an explicit group replaces the user's groups


def test_unknown_user_error_text(rootfs):
    with pytest.raises(InvalidArgument) as e:
        resolve_user(rootfs, "nobody-here")
    assert 'unknown user "nobody-here" in /etc/passwd of the container' in str(e.value)


def test_unknown_group(rootfs):
    with pytest.raises(InvalidArgument, match='unknown group "nogroup"'):
        resolve_user(rootfs, "app:nogroup")


def test_missing_passwd_allows_numeric_only(tmp_path):
    (tmp_path / "r").mkdir()
    assert resolve_user(str(tmp_path / "r"), "7:8").uid == 7
    with pytest.raises(InvalidArgument):
        resolve_user(str(tmp_path / "r"), "app")


def test_absolute_symlink_resolves_inside_the_rootfs(tmp_path):
    """/etc/passwd -> /shadowed/passwd must read <rootfs>/shadowed/passwd, not the host's."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "shadowed").mkdir()
    (root / "shadowed" / "passwd").write_text("builder:x:1234:1234::/b:/bin/sh\n")
    os.symlink("/shadowed/passwd", root / "etc" / "passwd")
    os.symlink("../../../../../../../hostgroup", root / "etc" / "group")  # clamped at root
    u = resolve_user(str(root), "builder")
    assert (u.uid, u.gid, u.home) == (1234, 1234, "/b")
    with pytest.raises(InvalidArgument):
        resolve_user(str(root), "root")  # the host's passwd was not read


def test_symlinked_etc_directory_stays_inside(tmp_path):
    root = tmp_path / "rootfs"
    (root / "real-etc").mkdir(parents=True)
    (root / "real-etc" / "passwd").write_text("x:x:5:6::/x:/bin/sh\n")
    os.symlink("/real-etc", root / "etc")
    assert resolve_user(str(root), "x").gid == 6


def test_symlink_loop_is_a_user_error(tmp_path):
    (tmp_path / "etc").mkdir()
    os.symlink("/etc/passwd", tmp_path / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="cannot read /etc/passwd"):
        resolve_user(str(tmp_path), "0")


def test_a_fifo_passwd_is_refused_without_blocking(tmp_path):
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="it is a FIFO, not a regular file"):
        resolve_user(str(tmp_path), "app")  # opening it for reading would block


def test_a_directory_or_oversized_group_is_refused(tmp_path, monkeypatch):
    from kiln.runtime import users

    (tmp_path / "etc" / "group").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="/etc/group of the container: it is a directory"):
        resolve_user(str(tmp_path), "0:wheel")
    (tmp_path / "etc" / "group").rmdir()
    (tmp_path / "etc" / "group").write_text(GROUP)
    monkeypatch.setattr(users, "MAX_ETC_FILE", 16)
    with pytest.raises(InvalidArgument, match="larger than 16 bytes"):
        resolve_user(str(tmp_path), "0:wheel")


def test_chown_reads_through_the_same_checks(tmp_path):
    from kiln.archive.safe_root import SafeRoot
    from kiln.container.owner import resolve_chown

    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "passwd")
    with SafeRoot(str(tmp_path)) as root, pytest.raises(InvalidArgument, match="FIFO"):
        resolve_chown(root, "app")
