"""buildah's working-container flags that reach the runtime, end to end with runc: what the
container sees (/etc/hosts, /proc/self/mountinfo, /proc/self/ns) and what the working
container keeps for its later runs, as buildah 1.28 does with the same flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

pytest.register_assert_rewrite("fixtures_images")

pytest_plugins = ["fixtures_images", "container_cli_fixture"]

from container_cli_fixture import ISOLATIONS, RUNC  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
]


def _mounted_at(mountinfo: str) -> dict[str, str]:
    """{mount point: mount root (the source's path for a bind)} of /proc/self/mountinfo."""
    return {line.split()[4]: line.split()[3] for line in mountinfo.splitlines()}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_run_no_hosts_leaves_the_images_hosts_file(kiln, tmp_path, isolation):
    name = kiln("from", "busybox").stdout.strip()
    show = "cat /etc/hosts || echo none; cat /proc/self/mountinfo >&2"
    res = kiln("run", "--isolation", isolation, "--no-hosts", name, "--", "sh", "-c", show)
    # the image has none, so the container has none: no kiln file, no empty mountpoint
    assert res.stdout == "none\n"
    mounts = _mounted_at(res.stderr)
    assert "/etc/hosts" not in mounts and "/etc/resolv.conf" in mounts
    assert kiln("diff", name).stdout == ""

    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.8.7\timagehost\n")
    kiln("copy", name, str(hosts), "/etc/hosts")
    res = kiln("run", "--isolation", isolation, "--no-hosts", name, "--", "cat", "/etc/hosts")
    assert res.stdout == "10.9.8.7\timagehost\n"
    res = kiln("run", "--isolation", isolation, name, "--", "cat", "/etc/hosts")
    assert "imagehost" not in res.stdout and "localhost" in res.stdout  # kiln's, as before

    res = kiln("run", "--no-hosts", "--add-host", "a:10.0.0.1", name, "true", check=False)
    assert (res.returncode, res.stderr) == (
        125, "Error: --no-hosts and --add-host conflict: /etc/hosts is the image's\n"
    )  # fmt: skip


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_from_volume_is_bound_in_every_run(kiln, tmp_path, isolation):
    kept, other = tmp_path / "kept", tmp_path / "other"
    for d in (kept, other):
        d.mkdir()
        (d / "f").write_text(d.name)
    name = kiln("from", "--isolation", isolation, "-v", f"{kept}:/data:ro,z", "busybox")
    name = name.stdout.strip()
    show = "cat /data/f; echo; touch /data/new 2>/dev/null || echo ro; cat /proc/self/mountinfo >&2"
    res = kiln("run", name, "--", "sh", "-c", show)
    assert res.stdout == "kept\nro\n"
    assert _mounted_at(res.stderr)["/data"] == str(kept)
    # a run's own volume comes beside it; one at the same place takes its place for that run
    res = kiln("run", "-v", f"{other}:/more", name, "--", "sh", "-c", show)
    assert (res.stdout, _mounted_at(res.stderr)["/more"]) == ("kept\nro\n", str(other))
    res = kiln("run", "-v", f"{other}:/data/", name, "--", "sh", "-c", show)
    assert res.stdout == "other\n" and (other / "new").exists()
    assert kiln("run", name, "--", "cat", "/data/f").stdout == "kept"
    assert kiln("diff", name).stdout == ""  # the mountpoint was a placeholder
    assert sorted(os.listdir(kept)) == ["f"]


def test_volume_destinations_stay_in_the_rootfs(kiln, tmp_path):
    src, victim = tmp_path / "src", tmp_path / "victim"
    src.mkdir()
    victim.mkdir()
    (src / "f").write_text("src")
    name = kiln("from", "-v", f"{src}:/a/../../../b", "busybox").stdout.strip()
    kiln("run", name, "--", "ln", "-s", str(victim), "/evil")
    res = kiln("run", "-v", f"{src}:/evil/in", name, "--", "sh", "-c",
               f"cat /b/f {victim}/in/f; cat /proc/self/mountinfo >&2")  # fmt: skip
    # ".." stops at the root, and the image's link is followed inside it, as runc does
    assert res.stdout == "srcsrc"
    mounts = _mounted_at(res.stderr)
    assert mounts["/b"] == mounts[f"{victim}/in"] == str(src)
    assert os.listdir(victim) == []  # nothing made on the host through the link
    diff = kiln("diff", name).stdout.splitlines()
    assert "A /evil" in diff and f"A {victim}" in diff  # parents stay, as buildah leaves them
    assert not any(line.endswith(("/in", "/b")) for line in diff)


@pytest.mark.parametrize(
    ("volume", "error"),
    [
        ("rel:/x", "--volume 'rel:/x': the host path must be absolute"),
        ("{missing}:/x", "--volume '{missing}:/x': the host path {missing} does not exist"),
        ("{src}:x", "--volume '{src}:x': the container path must be absolute"),
        ("{src}:/..", "--volume '{src}:/..': a mount cannot cover the container's root"),
        ("{src}:/x:ro,rw", "--volume '{src}:/x:ro,rw': 'ro' and 'rw' conflict"),
        ("{src}:/x:O,z", "--volume '{src}:/x:O,z': 'O' and 'z' conflict"),
        ("{src}:/x:U,U", "--volume '{src}:/x:U,U': 'U' and 'U' conflict"),
        ("{src}:/x:bogus", "--volume '{src}:/x:bogus': unknown option 'bogus'"),
    ],
)
def test_bad_volumes_are_refused_before_anything_is_made(kiln, tmp_path, volume, error):
    src, missing = tmp_path / "src", tmp_path / "missing"
    src.mkdir()
    spec = volume.format(src=src, missing=missing)
    error = error.format(src=src, missing=missing)
    res = kiln("from", "-v", spec, "busybox", check=False)
    assert res.returncode == 125 and res.stderr.startswith(f"Error: {error}"), res.stderr
    assert kiln("containers", "-q").stdout == ""
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("run", "-v", spec, name, "true", check=False)
    # the same words, but for a missing path: the runtime's, naming it
    says = f"mount source '{missing}' does not exist" if "missing" in volume else error
    assert res.returncode == 125 and res.stderr.startswith(f"Error: {says}"), res.stderr
    assert not missing.exists() and os.listdir(src) == []
    assert kiln("diff", name).stdout == ""


def test_volume_options_buildah_drops_are_accepted(kiln, tmp_path):
    name = kiln("from", "-v", f"{tmp_path}:/data:cached,nocopy,Z,nosuid", "busybox").stdout.strip()
    res = kiln("run", name, "--", "grep", " /data ", "/proc/self/mountinfo")
    assert res.stdout.split()[5].split(",")[:2] == ["rw", "nosuid"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_from_device_is_in_every_run(kiln, isolation):
    name = kiln("from", "--isolation", isolation, "--device", "/dev/null:/dev/mynull:rw",
                "--device", "/dev/zero:/opt/../opt/zero", "busybox").stdout.strip()  # fmt: skip
    show = "stat -c '%F %t:%T %a' /dev/mynull /opt/zero; echo x >/dev/mynull && head -c2 /opt/zero"
    res = kiln("run", name, "--", "sh", "-c", show)
    assert res.stdout == "character special file 1:3 666\ncharacter special file 1:5 666\n\0\0"
    assert kiln("diff", name).stdout == "A /opt\n"  # no node left; parents stay, as for volumes
    (info,) = json.loads(kiln("inspect", "--type", "container", name).stdout)
    null = os.stat("/dev/null")
    assert info["Devices"][0] == {
        "Source": "/dev/null", "Destination": "/dev/mynull", "path": "/dev/mynull",
        "permissions": "rw", "allow": False, "type": ord("c"), "major": 1, "minor": 3,
        "file_mode": null.st_mode & 0o7777, "uid": null.st_uid, "gid": null.st_gid,
    }  # fmt: skip
    assert [d["Destination"] for d in info["Devices"]] == ["/dev/mynull", "/opt/zero"]


@pytest.mark.parametrize(
    ("device", "error"),
    [
        (
            "/dev/../etc/passwd",
            "/dev/../etc/passwd is not a device node (a character or block device)",
        ),
        ("{tmp}", "{tmp} is not a device node (a character or block device)"),
        ("{tmp}/missing", "{tmp}/missing does not exist"),
        ("dev/null", "the host device must be an absolute path"),
        ("/dev/null:dev/x", "the container path must be absolute"),
        ("/dev/null:/dev/x:rwx", "permissions 'rwx' must be letters of rwm"),
        ("/dev/null:/dev/../", "/ cannot be a device"),
    ],
)
def test_bad_devices_are_refused_before_anything_is_made(kiln, tmp_path, device, error):
    device, error = device.format(tmp=tmp_path), error.format(tmp=tmp_path)
    res = kiln("from", "--device", device, "busybox", check=False)
    assert (res.returncode, res.stderr) == (125, f"Error: --device {device!r}: {error}\n")
    assert kiln("containers", "-q").stdout == ""
    assert not (tmp_path / "missing").exists()


@pytest.mark.runc
@pytest.mark.skipif(not RUNC, reason="no runc")
def test_from_security_opts_are_kept_for_every_run(kiln, tmp_path):
    show = ["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]
    name = kiln("from", "--security-opt", "seccomp=unconfined", "--security-opt",
                "no-new-privileges", "--security-opt", "label=disable", "busybox").stdout.strip()  # fmt: skip
    assert kiln("run", name, "--", *show).stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "0"]
    plain = kiln("from", "busybox").stdout.strip()
    assert kiln("run", plain, "--", *show).stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"]
    for opt, error in [
        (f"seccomp={tmp_path}/none.json", "cannot read the profile: No such file or directory"),
        ("bogus", "is not supported: use seccomp=unconfined|PROFILE"),
    ]:
        res = kiln("from", "--security-opt", opt, "busybox", check=False)
        assert res.returncode == 125 and error in res.stderr, res.stderr
    assert len(kiln("containers", "-q").stdout.split()) == 2


def _ns(kinds=("ipc", "pid", "uts")) -> list[str]:
    return [os.readlink(f"/proc/self/ns/{kind}") for kind in kinds]


SHOW_NS = "for k in ipc pid uts; do readlink /proc/self/ns/$k; done; cat /etc/hostname"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_from_host_namespaces_are_kept_for_every_run(kiln, isolation):
    name = kiln("from", "--isolation", isolation, "--ipc", "host", "--pid", "host", "--uts",
                "host", "busybox").stdout.strip()  # fmt: skip
    res = kiln("run", name, "--", "sh", "-c", SHOW_NS)
    assert res.stdout.splitlines() == [*_ns(), os.uname().nodename]
    (info,) = json.loads(kiln("inspect", "--type", "container", name).stdout)
    assert info["NamespaceOptions"] == [
        {"Name": n, "Host": n not in ("mount",), "Path": ""}
        for n in ("cgroup", "ipc", "mount", "network", "pid", "user", "uts")
    ]  # kiln's runs share the host's network unless told otherwise
    # a run's own flags win; private is a namespace of the run's own
    res = kiln("run", "--ipc", "private", "--uts", "private", name, "--", "sh", "-c", SHOW_NS)
    ipc, pid, uts, hostname = res.stdout.splitlines()
    assert (pid, ipc != _ns()[0], uts != _ns()[2]) == (_ns()[1], True, True)
    assert hostname != os.uname().nodename
    res = kiln("run", "--hostname", "box", name, "true", check=False)
    assert (res.returncode, res.stderr) == (
        125, "Error: --hostname needs a UTS namespace of the run's own, not --uts host\n"
    )  # fmt: skip


@pytest.fixture
def other_namespaces():
    """A process in IPC and UTS namespaces of its own: its /proc/PID/ns directory."""
    proc = subprocess.Popen(
        ["unshare", "--ipc", "--uts", "sh", "-c", "hostname elsewhere; echo ready; exec cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "ready\n"
        yield f"/proc/{proc.pid}/ns"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.runc
@pytest.mark.skipif(not RUNC, reason="no runc")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_run_joins_namespaces_by_path(kiln, other_namespaces):
    ns = other_namespaces
    want = [os.readlink(f"{ns}/ipc"), _ns(["pid"])[0], os.readlink(f"{ns}/uts")]
    assert want[0] != _ns()[0]
    name = kiln("from", "--ipc", f"{ns}/ipc", "busybox").stdout.strip()
    res = kiln("run", "--uts", f"{ns}/uts", "--pid", "host", name, "--", "sh", "-c",
               SHOW_NS + "; hostname")  # fmt: skip
    # the joined UTS namespace keeps its name; kiln does not know it for /etc/hostname
    assert res.stdout.splitlines() == [*want, "", "elsewhere"]
    (info,) = json.loads(kiln("inspect", "--type", "container", name).stdout)
    assert info["NamespaceOptions"][1] == {"Name": "ipc", "Host": False, "Path": f"{ns}/ipc"}
    res = kiln("run", "--isolation", "chroot", name, "true", check=False)
    assert (res.returncode, res.stderr) == (
        125, f"Error: --ipc {ns}/ipc: joining a namespace by its path needs --isolation oci\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "error"),
    [
        ("--ipc", "bogus", "--ipc 'bogus' is invalid: use private, host or the path of the "
                           "namespace to join (/proc/PID/ns/ipc)"),
        ("--pid", "/no/such/ns", "--pid /no/such/ns: no such namespace file"),
    ],
)  # fmt: skip
def test_bad_namespaces_are_refused(kiln, flag, value, error):
    res = kiln("from", flag, value, "busybox", check=False)
    assert (res.returncode, res.stderr) == (125, f"Error: {error}\n")
    assert kiln("containers", "-q").stdout == ""
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("run", flag, value, name, "true", check=False)
    assert (res.returncode, res.stderr) == (125, f"Error: {error}\n")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_overlay_volume_keeps_the_runs_writes_off_the_host(kiln, tmp_path, isolation):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("host\n")
    name = kiln("from", "-v", f"{src}:/data:O", "busybox").stdout.strip()
    write = "echo run > /data/f; echo new > /data/new; cat /data/f /data/new; ls /data"
    res = kiln("run", "--isolation", isolation, name, "--", "sh", "-c",
               write + "; cat /proc/self/mountinfo >&2")  # fmt: skip
    assert res.stdout == "run\nnew\nf\nnew\n"
    (line,) = [m for m in res.stderr.splitlines() if m.split()[4] == "/data"]
    assert line.split(" - ")[1].startswith("overlay ") and f"lowerdir={src}," in line
    assert sorted(os.listdir(src)) == ["f"] and (src / "f").read_text() == "host\n"
    # each run starts from the host's directory again; its upper went with it
    assert kiln("run", name, "--", "ls", "/data").stdout == "f\n"
    left = [p for _, dirs, _ in os.walk(tmp_path / "rt") for p in dirs if "overlay" in p]
    assert left == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_volume_u_gives_the_host_path_to_the_runs_user(kiln, tmp_path, isolation):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    outside = tmp_path / "outside"
    outside.write_text("not under the volume")
    (src / "link").symlink_to(outside)
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("run", "--isolation", isolation, "--user", "nobody", "-v", f"{src}:/data:U",
               name, "--", "sh", "-c", "echo g > /data/sub/g && stat -c %u:%g /data/sub/f")  # fmt: skip
    assert res.stdout == "65534:65534\n"
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in [src, *src.rglob("*")]}
    assert set(owners.values()) == {(65534, 65534)} and set(owners) == {"src", "sub", "f", "g",
                                                                        "link"}  # fmt: skip
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)  # links are not followed
