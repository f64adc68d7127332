"""Flag parsing for kiln.runtime: volumes, mounts, ulimits, memory sizes."""

import os

import pytest

from kiln.errors import InvalidArgument
from kiln.runtime import Mount, RunOptions, parse_memory, parse_mount, parse_ulimit, parse_volume
from kiln.runtime.options import RLIM_INFINITY, Ulimit


def test_parse_volume_ro_and_selinux_label():
    m = parse_volume("/srv/data:/data:ro,z")
    assert m == Mount("bind", "/srv/data", "/data", ("ro", "rbind"))
    assert m.readonly


def test_parse_volume_defaults_to_rw():
    m = parse_volume("/a:/b")
    assert not m.readonly and "rw" in m.options


@pytest.mark.parametrize("spec", ["/a", "rel:/b", "/a:rel", "/a:/b:bogus", "/a:/b:ro:x"])
def test_parse_volume_rejects(spec):
    with pytest.raises(InvalidArgument, match="--volume"):
        parse_volume(spec)


def test_parse_mount_bind_readonly():
    m = parse_mount("type=bind,src=/host,dst=/ctr,ro")
    assert (m.type, m.source, m.destination, m.readonly) == ("bind", "/host", "/ctr", True)


def test_parse_mount_tmpfs_size_and_mode():
    m = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1777")
    assert m.type == "tmpfs" and m.destination == "/scratch"
    assert "size=1048576" in m.options and "mode=1777" in m.options


def test_parse_mount_cache_keeps_fields_for_the_caller():
    m = parse_mount("type=cache,target=/root/.cache,id=pip,sharing=locked")
    assert m.type == "cache" and "id=pip" in m.options and "sharing=locked" in m.options


@pytest.mark.parametrize(
    "spec",
    ["type=volume,dst=/x", "type=bind,dst=/x", "type=bind,src=/a", "type=tmpfs,dst=/x,src=/a",
     "type=bind,src=/a,dst=/b,colour=red", "type=bind,src=/a,dst=rel"],
)  # fmt: skip
def test_parse_mount_rejects(spec):
    with pytest.raises(InvalidArgument, match="--mount"):
        parse_mount(spec)


def test_parse_ulimit():
    assert parse_ulimit("nofile=1024:2048") == Ulimit("RLIMIT_NOFILE", 1024, 2048)
    assert parse_ulimit("nproc=50") == Ulimit("RLIMIT_NPROC", 50, 50)
    assert parse_ulimit("core=-1") == Ulimit("RLIMIT_CORE", RLIM_INFINITY, RLIM_INFINITY)


@pytest.mark.parametrize("spec", ["nofile", "files=1", "nofile=abc", "nofile=10:5", "nofile=1:x"])
def test_parse_ulimit_errors_name_flag_and_value(spec):
    with pytest.raises(InvalidArgument) as e:
        parse_ulimit(spec)
    assert "--ulimit" in str(e.value) and spec in str(e.value)


@pytest.mark.parametrize(
    "text,expected",
    [("512m", 512 * 2**20), ("1g", 2**30), ("1.5g", 3 * 2**29), ("100", 100), ("64k", 65536),
     ("2GB", 2 * 2**30), ("10b", 10)],
)  # fmt: skip
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "-1m", "12x", "m", "1.2.3g"])
def test_parse_memory_rejects(text):
    with pytest.raises(InvalidArgument, match="--memory"):
        parse_memory(text)


@pytest.mark.parametrize(
    "kwargs,flag",
    [({"network": "macvlan"}, "--network"), ({"isolation": "vm"}, "--isolation"),
     ({"cwd": "rel"}, "--workingdir"), ({"env": ["NOEQUALS"]}, "--env"),
     ({"add_hosts": ["db"]}, "--add-host"), ({"add_hosts": ["db:999.1.1.1"]}, "--add-host"),
     ({"ulimits": ["bogus=1"]}, "--ulimit")],
)  # fmt: skip
def test_run_options_validate(kwargs, flag):
    with pytest.raises(InvalidArgument, match=flag):
        RunOptions(args=["true"], **kwargs).validate()


def test_run_options_need_a_command():
    with pytest.raises(InvalidArgument, match="no command"):
        RunOptions(args=[]).validate()


def test_parse_volume_takes_buildahs_options():
    m = parse_volume("/a:/b:cached,delegated,nocopy,Z,unbindable,nosuid,ro,bind")
    assert m.options == ("unbindable", "nosuid", "ro", "bind")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("ro,rw", "'ro' and 'rw' conflict"),
        ("shared,rprivate", "'shared' and 'rprivate' conflict"),
        ("z,Z", "'z' and 'Z' conflict"),
        ("O,Z", "'O' and 'Z' conflict"),
        ("idmap", "option 'idmap': idmapped mounts are not supported"),
    ],
)
def test_parse_volume_refuses_what_it_would_not_honour(options, says):
    with pytest.raises(InvalidArgument, match=f"--volume '/a:/b:{options}': {says}"):
        parse_volume(f"/a:/b:{options}")


def test_parse_volume_overlay_keeps_only_the_mount_flags():
    assert parse_volume("/a:/b:O,nosuid,ro,rbind") == Mount("overlay", "/a", "/b", ("nosuid",))


def test_volume_u_refuses_the_hosts_system_paths(tmp_path):
    from kiln.runtime.volume_options import _dangerous

    (tmp_path / "usr").symlink_to("/usr")
    assert _dangerous("/tmp") and _dangerous("/usr/") and _dangerous(str(tmp_path / "usr"))
    assert _dangerous(os.path.expanduser("~"))
    assert not _dangerous(str(tmp_path))
