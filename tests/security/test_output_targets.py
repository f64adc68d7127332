"""Outputs write into what the user named; they never replace a device, FIFO or link.

Issue 14, class 7: ``kiln save -o /dev/null IMAGE`` used to write a temp file and rename
it over the target, so as root it replaced the machine's ``/dev/null`` with a regular
file. Every command that writes a path the user names is run here against targets made
by the test in a private directory (never the real ``/dev/null``):

- a character device made with ``mknod`` (the same major/minor as ``/dev/null``): it
  stays that device;
- a FIFO with a reader thread: the reader gets the bytes, the FIFO stays a FIFO;
- a symbolic link to a regular file: followed as podman does, the link stays, the
  file it names is replaced atomically;
- a dangling symbolic link: followed, its target is created;
- an existing directory, a path in a missing directory: one clear ``Error:`` line;
- an existing regular file: replaced atomically (a descriptor opened on the old file
  still reads the old bytes) keeping its mode.

Beside each target nothing else in the directory may change: no temp file left, no
file replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_images"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mknod and kiln from need root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.timeout(300),
]

OLD = b"old bytes of the file that was there\n"
NULL_DEV = os.makedev(1, 3)
TIMEOUT = 120

# command -> (argv with {T} for the target, what the output is)
COMMANDS = {
    "save": (["save", "-o", "{T}", "busybox"], "tar"),
    "save-oci-archive": (["save", "--format", "oci-archive", "-o", "{T}", "busybox"], "tar"),
    "image-save": (["image", "save", "-o", "{T}", "busybox"], "tar"),
    "export": (["export", "-o", "{T}", "wc"], "tar"),
    "build-o-tar": (["build", "-o", "type=tar,dest={T}", "{ctx}"], "tar"),
    "build-o-oci": (["build", "-o", "type=oci,dest={T}", "{ctx}"], "tar"),
    "build-o-docker": (["build", "-o", "type=docker,dest={T}", "{ctx}"], "tar"),
    "build-iidfile": (["build", "--iidfile", "{T}", "{ctx}"], "id"),
    "commit-iidfile": (["commit", "--iidfile", "{T}", "wc", "committed:1"], "id"),
    "push-digestfile": (
        ["push", "--digestfile", "{T}", "busybox", "oci-archive:{out}/pushed.tar"],
        "digest",
    ),
    "push-oci-archive": (["push", "busybox", "oci-archive:{T}"], "tar"),
    "push-registry-digestfile": (
        ["push", "--tls-verify=false", "--digestfile", "{T}", "busybox", "{reg}/kiln/out:1"],
        "digest",
    ),
}


class Kiln:
    def __init__(self, tmp: Path, rootfs_tar: str):
        self.tmp = tmp
        self.env = dict(os.environ, KILN_ROOT=str(tmp / "root"), TMPDIR=str(tmp / "tmp"))
        self.env.pop("KILN_DEBUG", None)
        for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
            self.env.pop(var, None)
        (tmp / "registries.conf").write_text('unqualified-search-registries = ["docker.io"]\n')
        self.env["KILN_REGISTRIES_CONF"] = str(tmp / "registries.conf")
        self.env["XDG_RUNTIME_DIR"] = str(tmp / "run")
        (tmp / "tmp").mkdir()
        (tmp / "out").mkdir()
        (tmp / "cwd").mkdir()
        ctx = tmp / "ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text("FROM busybox\nLABEL purpose=outputs\n")
        self.subs = {"ctx": str(ctx), "out": str(tmp / "out")}
        for args in (("import", rootfs_tar, "busybox"), ("from", "--name", "wc", "busybox")):
            res = self.run(list(args))
            assert res.returncode == 0, res.stderr

    def run(self, args: list[str], target: str = "", **kw) -> subprocess.CompletedProcess:
        subs = dict(self.subs, T=target)
        kw.setdefault("cwd", self.tmp / "cwd")  # a relative path written by mistake lands here
        argv = [a.format(**subs) if "{" in a else a for a in args]
        if "stdout" not in kw:
            kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", "--progress", "quiet", *argv],
            env=self.env,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            **kw,
        )


@pytest.fixture(scope="module")
def kiln_env(tmp_path_factory, busybox_rootfs_tar):
    return Kiln(tmp_path_factory.mktemp("outputs"), busybox_rootfs_tar)


@pytest.fixture
def kiln(kiln_env, request):
    """The module's kiln; a test of a registry command starts the session's plain registry."""
    cmd = getattr(request.node, "callspec", None)
    if cmd is not None and "registry" in str(cmd.params.get("cmd", "")):
        kiln_env.subs["reg"] = request.getfixturevalue("registry_plain").host
    return kiln_env


def listing(directory: Path) -> dict[str, tuple]:
    """Every entry: kind, device numbers, link target, size and content of regular files."""
    out = {}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        entry: tuple = (stat.S_IFMT(st.st_mode), st.st_rdev, stat.S_IMODE(st.st_mode))
        if stat.S_ISLNK(st.st_mode):
            entry += (os.readlink(directory / name),)
        elif stat.S_ISREG(st.st_mode):
            entry += ((directory / name).read_bytes(),)
        out[name] = entry
    return out


def check_output(data: bytes, kind: str) -> None:
    if kind == "tar":
        assert len(data) >= 1024 and len(data) % 512 == 0, len(data)
        with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tf:
            assert tf.getmembers()
    elif kind == "id":
        assert data.startswith(b"sha256:") and len(data.strip()) == 71, data
    else:
        assert data.startswith(b"sha256:"), data


def one_error_line(res: subprocess.CompletedProcess, *words: str) -> str:
    err = res.stderr.decode()
    assert res.returncode != 0, "accepted"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "unexpected" not in lines[0].lower(), lines[0]
    assert any(w in lines[0].lower() for w in words), lines[0]
    return lines[0]


def fresh_dir(kiln: Kiln, name: str) -> Path:
    d = kiln.tmp / "targets" / name
    d.mkdir(parents=True)
    (d / "bystander").write_bytes(b"must not change\n")
    return d


IDS = list(COMMANDS)


@pytest.mark.parametrize("cmd", IDS)
def test_a_character_device_stays_a_device(kiln, cmd):
    args, _kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"dev-{cmd}")
    dev = d / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, NULL_DEV)
    before = listing(d)
    res = kiln.run(args, str(dev))
    assert res.returncode == 0, res.stderr.decode()
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == NULL_DEV, "the device was replaced"
    assert listing(d) == before


@pytest.mark.parametrize("cmd", IDS)
def test_a_fifo_gets_the_bytes(kiln, cmd):
    args, kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"fifo-{cmd}")
    fifo = d / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:  # blocks until kiln opens the write end
            got.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    before = listing(d)
    try:
        res = kiln.run(args, str(fifo))
    finally:
        t.join(timeout=30)
        if t.is_alive():  # kiln never opened the FIFO: open it ourselves so the reader ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            t.join(timeout=10)
    assert res.returncode == 0, res.stderr.decode()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got and got[0], "the reader got nothing"
    check_output(got[0], kind)
    assert listing(d) == before


@pytest.mark.parametrize("cmd", IDS)
def test_a_regular_file_is_replaced_atomically(kiln, cmd):
    args, kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"reg-{cmd}")
    target = d / "out"
    target.write_bytes(OLD)
    os.chmod(target, 0o640)
    before = listing(d)
    with open(target, "rb") as old:
        res = kiln.run(args, str(target))
        assert res.returncode == 0, res.stderr.decode()
        assert old.read() == OLD, "written in place: a reader of the old file saw a change"
    check_output(target.read_bytes(), kind)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640, "the file's mode was not kept"
    after = listing(d)
    assert after.keys() == before.keys(), "a temp file was left, or one went missing"
    assert after["bystander"] == before["bystander"]


@pytest.mark.parametrize("cmd", IDS)
def test_a_symlink_is_followed_and_its_target_replaced(kiln, cmd):
    args, kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"link-{cmd}")
    (d / "real").write_bytes(OLD)
    os.symlink("real", d / "link")
    before = listing(d)
    with open(d / "real", "rb") as old:
        res = kiln.run(args, str(d / "link"))
        assert res.returncode == 0, res.stderr.decode()
        assert old.read() == OLD
    assert os.readlink(d / "link") == "real", "the link was replaced"
    check_output((d / "real").read_bytes(), kind)
    after = listing(d)
    assert after.keys() == before.keys()
    assert after["link"] == before["link"] and after["bystander"] == before["bystander"]


@pytest.mark.parametrize("cmd", IDS)
def test_a_dangling_symlink_creates_its_target(kiln, cmd):
    args, kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"dangling-{cmd}")
    os.symlink("made-by-kiln", d / "link")
    before = listing(d)
    res = kiln.run(args, str(d / "link"))
    assert res.returncode == 0, res.stderr.decode()
    assert os.readlink(d / "link") == "made-by-kiln"
    check_output((d / "made-by-kiln").read_bytes(), kind)
    after = listing(d)
    del after["made-by-kiln"]
    assert after == before


@pytest.mark.parametrize("cmd", IDS)
def test_a_directory_is_refused(kiln, cmd):
    args, _kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"dir-{cmd}")
    (d / "adir").mkdir()
    (d / "adir" / "inside").write_bytes(OLD)
    before, inside = listing(d), listing(d / "adir")
    res = kiln.run(args, str(d / "adir"))
    assert f"{d / 'adir'} is a directory; give a file name" in one_error_line(res, "directory")
    assert listing(d) == before and listing(d / "adir") == inside


@pytest.mark.parametrize("cmd", IDS)
def test_a_missing_parent_directory_is_refused(kiln, cmd):
    args, _kind = COMMANDS[cmd]
    d = fresh_dir(kiln, f"noparent-{cmd}")
    before = listing(d)
    res = kiln.run(args, str(d / "no" / "such" / "out"))
    assert f"{d / 'no' / 'such'}: no such directory to write out in" in one_error_line(
        res, "no such"
    )
    assert listing(d) == before


def test_a_device_target_of_a_link_stays_a_device(kiln):
    d = fresh_dir(kiln, "link-to-dev")
    os.mknod(d / "null", 0o666 | stat.S_IFCHR, NULL_DEV)
    os.symlink("null", d / "link")
    before = listing(d)
    res = kiln.run(COMMANDS["save"][0], str(d / "link"))
    assert res.returncode == 0, res.stderr.decode()
    assert listing(d) == before


def test_a_socket_is_refused(kiln):
    import socket

    d = fresh_dir(kiln, "socket")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(d / "sock"))
        before = listing(d)
        res = kiln.run(COMMANDS["save"][0], str(d / "sock"))
        assert f"{d / 'sock'} is a socket;" in one_error_line(res, "socket")
        assert listing(d) == before
    finally:
        sock.close()


def test_a_symlink_loop_is_refused(kiln):
    d = fresh_dir(kiln, "loop")
    os.symlink("b", d / "a")
    os.symlink("a", d / "b")
    before = listing(d)
    res = kiln.run(COMMANDS["save"][0], str(d / "a"))
    one_error_line(res, "symbolic links")
    assert listing(d) == before


@pytest.mark.parametrize(
    "spec, kind",
    [("-", "rootfs"), ("type=tar,dest=-", "rootfs"), ("type=oci,dest=-", "oci")],
)
def test_build_output_dash_is_stdout(kiln, spec, kind):
    """``-o -`` and ``dest=-`` write the tar to standard output, as BuildKit and buildah."""
    cwd = kiln.tmp / "dash-cwd"
    cwd.mkdir(exist_ok=True)
    res = kiln.run(["build", "-o", spec, kiln.subs["ctx"]], cwd=cwd)
    assert res.returncode == 0, res.stderr.decode()
    assert os.listdir(cwd) == [], "wrote a file named -"
    import io

    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tf:
        names = tf.getnames()
    if kind == "rootfs":
        assert "bin/busybox" in [n.lstrip("./") for n in names], names[:10]
    else:
        assert "oci-layout" in names and "index.json" in names, names


def test_build_local_output_to_stdout_is_refused(kiln):
    res = kiln.run(["build", "-o", "type=local,dest=-", kiln.subs["ctx"]])
    one_error_line(res, "stdout", "standard output")
    assert os.listdir(kiln.tmp / "cwd") == []


def test_save_keeps_podmans_dash(kiln):
    """``kiln save -o -`` writes a file named ``-``, as ``podman save -o -`` does."""
    cwd = kiln.tmp / "save-dash"
    cwd.mkdir()
    res = kiln.run(["save", "-o", "-", "busybox"], cwd=cwd)
    assert res.returncode == 0, res.stderr.decode()
    check_output((cwd / "-").read_bytes(), "tar")


def test_images_are_unchanged(kiln):
    """The refusals left the store usable: the image and container are still there."""
    res = kiln.run(["images", "--format", "json"])
    names = [n for i in json.loads(res.stdout) for n in i["Names"]]
    assert "localhost/busybox:latest" in names
    shutil.rmtree(kiln.tmp / "targets", ignore_errors=True)


DIR_COMMANDS = {
    "save-oci-dir": ["save", "--format", "oci-dir", "-o", "{T}", "busybox"],
    "save-docker-dir": ["save", "--format", "docker-dir", "-o", "{T}", "busybox"],
    "push-oci": ["push", "busybox", "oci:{T}"],
    "push-dir": ["push", "busybox", "dir:{T}"],
    "build-o-local": ["build", "-o", "type=local,dest={T}", "{ctx}"],
}


@pytest.mark.parametrize("target", ["device", "file", "fifo"])
@pytest.mark.parametrize("cmd", list(DIR_COMMANDS))
def test_directory_outputs_refuse_what_is_not_a_directory(kiln, cmd, target):
    d = fresh_dir(kiln, f"dirout-{cmd}-{target}")
    path = d / "t"
    if target == "device":
        os.mknod(path, 0o666 | stat.S_IFCHR, NULL_DEV)
    elif target == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(OLD)
    before = listing(d)
    res = kiln.run(DIR_COMMANDS[cmd], str(path))
    one_error_line(res, "needs a directory")
    assert listing(d) == before


def own_stdout_link(kiln: Kiln, name: str) -> str:
    """A link made like ``/dev/stdout`` (to ``/proc/self/fd/1``) but in the test's directory:
    the machine's own ``/dev/stdout`` is never a target here, as kiln before the fix replaced
    it with a regular file."""
    d = fresh_dir(kiln, name)
    os.symlink("/proc/self/fd/1", d / "stdout")
    return str(d / "stdout")


@pytest.mark.parametrize("form", ["link", "/dev/fd/1", "/proc/self/fd/1"])
@pytest.mark.parametrize("cmd", ["save", "export", "build-iidfile", "commit-iidfile"])
def test_own_stdout_by_name_writes_into_the_pipe(kiln, cmd, form):
    """``-o /dev/stdout`` writes into kiln's standard output (a pipe here), as podman does;
    it is not resolved to ``/proc/PID/fd/pipe:[...]`` and refused, nor replaced."""
    args, kind = COMMANDS[cmd]
    target = (
        own_stdout_link(kiln, f"stdout-{cmd}-{form.replace('/', '_')}") if form == "link" else form
    )
    res = kiln.run(args, target)
    assert res.returncode == 0, res.stderr.decode()
    if kind == "id":  # the --iidfile bytes, then the ID the command prints (--quiet form)
        assert res.stdout[:7] == b"sha256:", res.stdout
        assert res.stdout[7:71] == res.stdout[71:].strip().removeprefix(b"sha256:"), res.stdout
    else:
        check_output(res.stdout, kind)
    if form == "link":
        assert os.readlink(target) == "/proc/self/fd/1"
        assert sorted(os.listdir(os.path.dirname(target))) == ["bystander", "stdout"]
    assert os.listdir(kiln.tmp / "cwd") == []


def test_own_stdout_redirected_to_a_file_writes_that_file(kiln):
    target = own_stdout_link(kiln, "stdout-file")
    d = Path(target).parent
    with open(d / "out.tar", "wb") as f:
        res = kiln.run(COMMANDS["save"][0], target, stdout=f, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stderr.decode()
    check_output((d / "out.tar").read_bytes(), "tar")
    assert sorted(os.listdir(d)) == ["bystander", "out.tar", "stdout"]
    assert os.readlink(target) == "/proc/self/fd/1"
