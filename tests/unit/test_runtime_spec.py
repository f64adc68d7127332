"""OCI config.json generation: namespaces, capabilities, rlimits, mounts, seccomp, resources."""

import os
import resource
import subprocess
import sys

import pytest

from kiln.errors import InvalidArgument
from kiln.runtime import Mount, RunOptions
from kiln.runtime.options import RLIM_INFINITY
from kiln.runtime.spec import build_spec
from kiln.runtime.users import ResolvedUser

ROOT = ResolvedUser(0, 0, (), "/root")
ETC = {"/etc/hosts": "/b/hosts", "/etc/resolv.conf": "/b/resolv.conf", "/etc/hostname": "/b/hn"}


def spec(**kwargs):
    user = kwargs.pop("user", ROOT)
    return build_spec(RunOptions(args=["sh", "-c", "true"], **kwargs), "/rootfs", user, ETC)


def ns_types(s):
    return {n["type"] for n in s["linux"]["namespaces"]}


def test_namespaces_per_network_mode():
    assert ns_types(spec(network="host")) == {"pid", "ipc", "uts", "mount"}
    assert ns_types(spec(network="none")) == {"pid", "ipc", "uts", "mount", "network"}
    assert ns_types(spec(network="private")) == {"pid", "ipc", "uts", "mount", "network"}


def test_sys_is_bound_with_host_network_and_fresh_otherwise():
    host = {m["destination"]: m for m in spec(network="host")["mounts"]}
    assert host["/sys"]["type"] == "bind" and "rro" in host["/sys"]["options"]
    none = {m["destination"]: m for m in spec(network="none")["mounts"]}
    assert none["/sys"]["type"] == "sysfs" and "ro" in none["/sys"]["options"]


def test_default_capabilities_are_buildahs():
    caps = spec()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert set(caps["bounding"]) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }  # fmt: skip


def test_cap_add_and_drop_with_and_without_prefix():
    caps = spec(cap_add=["net_admin", "CAP_SYS_PTRACE"], cap_drop=["chown"])["process"]
    bounding = caps["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding and "CAP_SYS_PTRACE" in bounding
    assert "CAP_CHOWN" not in bounding


def test_cap_drop_all_then_add_one():
    caps = spec(cap_drop=["ALL"], cap_add=["CAP_KILL"])["process"]["capabilities"]
    assert caps["bounding"] == ["CAP_KILL"]


def test_cap_add_all():
    bounding = spec(cap_add=["all"])["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in bounding and "CAP_MKNOD" in bounding


def test_unknown_cap_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="--cap-add 'CAP_FLY'"):
        spec(cap_add=["CAP_FLY"])


def test_non_root_user_keeps_only_bounding_set():
    s = spec(user=ResolvedUser(1000, 1000, (10,), "/home/a"))
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    caps = s["process"]["capabilities"]
    assert caps["effective"] == [] and caps["permitted"] == [] and caps["bounding"]


def rlimit(s, name):
    return next(r for r in s["process"]["rlimits"] if r["type"] == name)


def test_default_nofile_is_clamped_to_our_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r = rlimit(spec(), "RLIMIT_NOFILE")
    expected = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
    assert r["hard"] == r["soft"] == expected


def test_every_ulimit_is_clamped(monkeypatch):
    real = resource.getrlimit

    def fake(which):
        if which == resource.RLIMIT_NOFILE:
            return (1000, 4096)
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", fake)
    r = rlimit(spec(ulimits=["nofile=2048:100000"]), "RLIMIT_NOFILE")
    assert (r["soft"], r["hard"]) == (2048, 4096)
    r = rlimit(spec(ulimits=["nofile=-1"]), "RLIMIT_NOFILE")
    assert (r["soft"], r["hard"]) == (4096, 4096)
    r = rlimit(spec(), "RLIMIT_NOFILE")
    assert (r["soft"], r["hard"]) == (4096, 4096)


def test_unlimited_stays_unlimited_when_we_are_unlimited(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda _w: (0, resource.RLIM_INFINITY))
    r = rlimit(spec(ulimits=["core=-1"]), "RLIMIT_CORE")
    assert r["hard"] == r["soft"] == RLIM_INFINITY


def test_process_basics():
    s = spec(env=["A=1"], cwd="/work", hostname="box", no_new_privileges=True,
             readonly_rootfs=True)  # fmt: skip
    p = s["process"]
    assert p["args"] == ["sh", "-c", "true"] and p["cwd"] == "/work"
    assert p["env"][0].startswith("PATH=/usr/local/sbin:") and "A=1" in p["env"]
    assert "HOME=/root" in p["env"]
    assert p["terminal"] is False and p["noNewPrivileges"] is True
    assert s["hostname"] == "box"
    assert s["root"] == {"path": "/rootfs", "readonly": True}


def test_given_path_is_kept():
    env = spec(env=["PATH=/opt/bin"])["process"]["env"]
    assert [e for e in env if e.startswith("PATH=")] == ["PATH=/opt/bin"]


def test_mounts_include_system_etc_and_user_mounts():
    s = spec(shm_size=1 << 20, mounts=[
        Mount("bind", "/host/data", "/data", ("ro", "rbind")),
        Mount("tmpfs", "", "/scratch", ("size=1024",)),
    ])  # fmt: skip
    by_dest = {m["destination"]: m for m in s["mounts"]}
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"):
        assert dest in by_dest
    assert "size=1048576" in by_dest["/dev/shm"]["options"]
    assert by_dest["/etc/hosts"]["source"] == "/b/hosts"
    assert by_dest["/etc/resolv.conf"]["type"] == "bind"
    assert by_dest["/data"]["source"] == "/host/data" and "ro" in by_dest["/data"]["options"]
    assert by_dest["/scratch"]["type"] == "tmpfs" and "size=1024" in by_dest["/scratch"]["options"]


def test_user_mount_over_etc_hosts_wins():
    s = spec(mounts=[Mount("bind", "/my/hosts", "/etc/hosts", ("rbind",))])
    hosts = [m for m in s["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in hosts] == ["/my/hosts"]


def test_unmapped_cache_mount_needs_a_source():
    with pytest.raises(InvalidArgument, match="cache"):
        spec(mounts=[Mount("cache", "", "/root/.cache", ("id=x",))])


def test_masked_and_readonly_paths():
    linux = spec()["linux"]
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/firmware" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]


def test_resources():
    res = spec(memory=512 << 20, memory_swap=1 << 30, cpu_shares=512, cpu_quota=50000,
               cpu_period=100000, cpuset_cpus="0")["linux"]["resources"]  # fmt: skip
    assert res["memory"] == {"limit": 512 << 20, "swap": 1 << 30}
    assert res["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]


def test_default_seccomp_and_unconfined():
    sec = spec()["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for r in sec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"read", "write", "execve", "openat", "clone"} <= allowed
    assert "mount" not in allowed and "ptrace" not in allowed
    # no syscall gets two actions (runc/libseccomp refuse conflicting rules)
    names = [n for r in sec["syscalls"] for n in r["names"]]
    assert len(names) == len(set(names))
    assert "seccomp" not in spec(seccomp="unconfined")["linux"]


def test_seccomp_follows_capabilities():
    sec = spec(cap_add=["SYS_ADMIN"])["linux"]["seccomp"]
    allowed = {n for r in sec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"mount", "unshare", "clone3"} <= allowed


def test_seccomp_profile_file(tmp_path):
    good = tmp_path / "p.json"
    good.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}')
    assert spec(seccomp=str(good))["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "A", "defaultAction": "B"}')
    with pytest.raises(InvalidArgument, match="seccomp"):
        spec(seccomp=str(bad))
    with pytest.raises(InvalidArgument, match="seccomp"):
        spec(seccomp=str(tmp_path / "missing.json"))


def _x32_getpid_answers() -> bool:
    """Ask in a child process (a filter could kill the asker) whether an x32 getpid works."""
    probe = (
        "import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
        "libc.syscall.restype = ctypes.c_long; "
        "sys.exit(0 if libc.syscall(ctypes.c_long(0x40000000 | 39)) >= 0 else 3)"
    )
    done = subprocess.run([sys.executable, "-c", probe], timeout=30, check=False)
    return done.returncode == 0


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 is an x86_64 ABI")
def test_default_seccomp_lists_x32_only_where_the_kernel_runs_it():
    # runc compiles the filter for each listed arch at every start; x32 on a kernel
    # without it costs ~5 ms of CPU per RUN and guards nothing
    archs = spec()["linux"]["seccomp"]["architectures"]
    assert archs[:2] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert ("SCMP_ARCH_X32" in archs) == _x32_getpid_answers()


def test_seccomp_profile_architectures_are_kept_as_given(tmp_path):
    given = tmp_path / "p.json"
    given.write_text(
        '{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", '
        '"SCMP_ARCH_X32"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}'
    )
    archs = spec(seccomp=str(given))["linux"]["seccomp"]["architectures"]
    assert archs == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]


def test_devices_under_dev_are_made_and_every_device_allowed():
    null = os.stat("/dev/null")
    s = spec(devices=("/dev/null:/dev/x/mynull:rw", "/dev/null:/opt/../srv/null"))
    assert s["linux"]["devices"] == [
        {"path": "/dev/x/mynull", "type": "c", "major": os.major(null.st_rdev),
         "minor": os.minor(null.st_rdev), "fileMode": null.st_mode & 0o7777,
         "uid": null.st_uid, "gid": null.st_gid},
    ]  # fmt: skip
    allowed = s["linux"]["resources"]["devices"]
    assert allowed[0] == {"allow": False, "access": "rwm"}
    assert [(r["access"], r["major"], r["minor"]) for r in allowed[1:]] == [
        ("rw", os.major(null.st_rdev), os.minor(null.st_rdev)),
        ("rwm", os.major(null.st_rdev), os.minor(null.st_rdev)),
    ]
    assert "devices" not in spec()["linux"]


def test_namespaces_shared_with_the_host_or_joined_by_path():
    s = spec(pid="host", ipc="/proc/self/ns/ipc", uts="host", network="none")
    assert s["linux"]["namespaces"] == [
        {"type": "ipc", "path": "/proc/self/ns/ipc"}, {"type": "mount"}, {"type": "network"},
    ]  # fmt: skip
    assert "hostname" not in s  # the host's UTS namespace keeps its name
    assert spec(ipc="private", hostname="box")["hostname"] == "box"
    assert ns_types(spec(ipc="private")) == ns_types(spec())
    with pytest.raises(InvalidArgument, match="--hostname needs a UTS namespace"):
        spec(uts="host", hostname="box")
