"""The working-container verbs end to end: kiln from/run/copy/add/config/commit/..., then podman."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from file_server import serving

pytest.register_assert_rewrite("fixtures_images")

pytest_plugins = ["fixtures_images", "container_cli_fixture"]

from container_cli_fixture import ISOLATIONS, RUNC  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
]


def test_run_exit_code_and_streams(kiln):
    name = kiln("from", "busybox").stdout.strip()
    assert name == "busybox-working-container"
    res = kiln("run", name, "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (res.returncode, res.stdout, res.stderr.strip()) == (7, "out\n", "err")
    res = kiln("run", name, "no-such-binary", check=False)
    assert (res.returncode, res.stderr) == (
        127,
        'Error: running container: exec: "no-such-binary": executable file not found in $PATH\n',
    )
    res = kiln("run", name, "/etc", check=False)
    assert (res.returncode, res.stderr) == (
        126,
        'Error: running container: exec: "/etc": permission denied\n',
    )
    assert kiln("from", "busybox").stdout.strip() == "busybox-working-container-1"


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_run_options(kiln, tmp_path, isolation):
    name = kiln("from", "--name", "opts", "busybox").stdout.strip()
    host = tmp_path / "vol"
    host.mkdir()
    (host / "in").write_text("from host\n")
    script = (
        "id -u; pwd; echo $FOO; cat /vol/in; touch /vol/x 2>/dev/null || echo ro; "
        "grep -c myhost /etc/hosts; ulimit -n; mount | grep -c ' /scratch '"
    )
    res = kiln(
        "run", "--isolation", isolation, "--user", "nobody", "--workingdir", "/made/here",
        "--env", "FOO=bar", "--volume", f"{host}:/vol:ro", "--mount", "type=tmpfs,dst=/scratch",
        "--add-host", "myhost:10.1.2.3", "--ulimit", "nofile=100:100", "--network", "none",
        name, "--", "sh", "-c", script,
    )  # fmt: skip
    assert res.stdout.splitlines() == ["65534", "/made/here", "bar", "from host", "ro", "1",
                                       "100", "1"]  # fmt: skip
    diff = kiln("diff", name).stdout.splitlines()
    assert "A /made/here" in diff  # the working directory is created and kept
    assert not any(p in line for line in diff for p in ("/vol", "/scratch", "hosts", "resolv"))


def test_a_local_image_s_container_records_its_full_name_as_buildah(kiln):
    # buildah's IMAGE NAME / FromImage: the name the image is stored under, localhost/ too
    kiln("tag", "busybox", "mine:1")
    kiln("from", "--name", "local", "mine:1")
    row = kiln("containers", "--filter", "name=local", "--format", "{{.ImageName}}").stdout
    assert row == "localhost/mine:1\n"
    assert kiln("inspect", "--format", "{{.FromImage}}", "local").stdout == "localhost/mine:1\n"


@pytest.mark.runc
@pytest.mark.skipif(not RUNC, reason="no runc")
def test_run_runc_only_options(kiln):
    """Capabilities dropped via the runtime spec and seccomp: oci isolation only."""
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("run", "--cap-drop", "ALL", name, "--", "grep", "CapEff", "/proc/self/status")
    assert res.stdout.split()[1] == "0000000000000000"
    res = kiln("run", "--security-opt", "seccomp=unconfined", name, "--", "grep", "Seccomp:",
               "/proc/self/status")  # fmt: skip
    assert res.stdout.split()[1] == "0"


def test_full_scenario_with_podman(kiln, tmp_path, kiln_store):
    name = kiln("from", "busybox").stdout.strip()
    kiln("run", name, "--", "sh", "-c",
         "mkdir /data && echo d > /data/f && chmod 600 /data/f && chown 65534:65534 /data/f && "
         "rm /etc/group && rm -r /home")  # fmt: skip
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "dir" / "one").write_text("one\n")
    (ctx / "two.txt").write_text("two\n")
    with tarfile.open(ctx / "arch.tar.xz", "w:xz") as tar:
        tar.add(ctx / "two.txt", arcname="unpacked/two.txt")
    digest = kiln("copy", "--chown", "nobody", "--chmod", "750", name, "dir", "two.txt", "/app/",
                  cwd=ctx).stdout.strip()  # fmt: skip
    assert len(digest) == 64
    kiln("add", name, "arch.tar.xz", "/opt/", cwd=ctx)
    kiln("config", "--env", "A=1", "--label", "org.test=yes", "--port", "8080",
         "--volume", "/vol", "--workingdir", "/app", "--user", "nobody", "--stop-signal", "TERM",
         "--healthcheck", "CMD-SHELL true", "--healthcheck-interval", "30s",
         "--entrypoint", '["/bin/sh", "-c"]', "--cmd", '["ls -ln /app /data; cat /opt/unpacked/two.txt"]',
         "--author", "tester", "--annotation", "a=b", name)  # fmt: skip
    changes = kiln("diff", name).stdout.splitlines()
    assert {"D /etc/group", "D /home", "A /data/f", "A /app/one"} <= set(changes)
    iid_file = tmp_path / "iid"
    image_id = kiln("commit", "--format", "docker", "--iidfile", str(iid_file), name,
                    "test/scenario:1").stdout.strip()  # fmt: skip
    assert iid_file.read_text() == "sha256:" + image_id
    kiln("save", "-o", str(tmp_path / "img.tar"), "test/scenario:1")

    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    top = tempfile.mkdtemp(prefix="kp-", dir="/tmp")
    podman = ["podman", "--root", f"{top}/root", "--runroot", f"{top}/run",
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]  # fmt: skip
    try:
        subprocess.run([*podman, "load", "-i", str(tmp_path / "img.tar")], check=True,
                       capture_output=True)  # fmt: skip
        limits = []
        for flag, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
            hard = resource.getrlimit(which)[1]
            value = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
            limits += ["--ulimit", f"{flag}={value}:{value}"]
        res = subprocess.run([*podman, "run", "--rm", "--runtime", "runc", "--net", "none",
                              *limits, image_id], capture_output=True, text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr
        out = res.stdout
        assert "65534" in out and "two" in out
        lines = {line.split()[-1]: line for line in out.splitlines() if line.startswith("-")}
        assert lines["f"].startswith("-rw-------") and " 65534 " in lines["f"]
        assert lines["one"].startswith("-rwxr-x---") and " 65534 " in lines["one"]
        listing = subprocess.run([*podman, "run", "--rm", "--runtime", "runc", "--net", "none",
                                  *limits, "--entrypoint", "ls", image_id, "/etc", "/"],
                                 capture_output=True, text=True).stdout.split()  # fmt: skip
        assert "group" not in listing and "home" not in listing and "passwd" in listing
        info = json.loads(subprocess.run([*podman, "inspect", image_id], check=True,
                                         capture_output=True, text=True).stdout)[0]  # fmt: skip
        cfg = info["Config"]
        assert "A=1" in cfg["Env"] and cfg["Labels"] == {"org.test": "yes"}
        assert "8080/tcp" in cfg["ExposedPorts"] and "/vol" in cfg["Volumes"]
        # the stop signal is kept as given, as buildah config --stop-signal keeps it
        assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/app", "nobody", "TERM")
        assert cfg["Entrypoint"] == ["/bin/sh", "-c"]
        assert info["Author"] == "tester"
        assert info["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
        assert info["Healthcheck"]["Interval"] == 30_000_000_000
    finally:
        subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def test_listing_mount_export_rm(kiln, tmp_path):
    name = kiln("from", "--name", "lister", "busybox").stdout.strip()
    rows = json.loads(kiln("containers", "--json").stdout)
    assert [r["containername"] for r in rows] == ["lister"] and rows[0]["builder"]
    inspected = json.loads(kiln("inspect", "--type", "container", name).stdout)[0]
    assert inspected["Container"] == "lister"
    # the full name the image was found by, as buildah inspect gives FromImage
    assert inspected["FromImage"] == "docker.io/library/busybox:latest"
    path = kiln("mount", name).stdout.strip()
    assert os.path.ismount(path) and os.path.isfile(os.path.join(path, "bin", "busybox"))
    (Path(path) / "via-mount").write_text("m")
    assert kiln("inspect", "--type", "container", path).returncode == 0  # found by mount path
    kiln("umount", name)
    assert not os.path.ismount(path)
    kiln("export", name, "-o", str(tmp_path / "fs.tar"))
    with tarfile.open(tmp_path / "fs.tar") as tar:
        assert "via-mount" in tar.getnames()
    assert kiln("rm", name).stdout.strip() == inspected["ContainerID"]
    assert json.loads(kiln("containers", "--json").stdout) == []


def test_bad_input(kiln, tmp_path):
    res = kiln("run", "nosuch", "--", "true", check=False)
    assert res.returncode == 125 and "no such container" in res.stderr
    name = kiln("from", "busybox").stdout.strip()
    (tmp_path / "f").write_text("f")
    for args, message in (
        (("copy", name, "missing", "/x"), "not found"),
        (("copy", "--chown", "nosuchuser", name, "f", "/x"), "unknown user"),
        (("copy", "--contextdir", ".", name, "../etc/passwd", "/x"), "not found"),
        (("from", "no-such-image", "--pull", "never"), "image not known"),
        (("commit", "nosuch"), "no such container"),
        (("rm", name, "nosuch"), "no such container"),
    ):
        res = kiln(*args, check=False)
        assert res.returncode == 125 and message in res.stderr, (args, res.stderr)
        assert res.stderr.count("\n") == 1  # one clear line, no traceback
    assert kiln("diff", name).stdout == ""  # nothing changed, container still there
    assert kiln("images", "-q").stdout.count("\n") == 1  # only busybox


def test_copy_takes_host_paths_like_buildah(kiln, tmp_path):
    """`kiln copy C /abs/path DEST` and `../x` copy host files, as buildah copy does; a
    relative source is still read from the current directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "abs.txt").write_text("absolute\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "rel.txt").write_text("relative\n")
    name = kiln("from", "busybox").stdout.strip()
    kiln("copy", name, str(outside / "abs.txt"), "/dst/", cwd=work)
    kiln("copy", name, "../outside/abs.txt", "/up.txt", cwd=work)
    kiln("copy", name, "rel.txt", str(outside / "abs.txt"), "/both/", cwd=work)
    kiln("copy", name, str(work / "rel.txt"), "/here.txt", cwd=work)  # absolute, in the cwd
    res = kiln("run", name, "cat", "/dst/abs.txt", "/up.txt", "/both/rel.txt", "/both/abs.txt",
               "/here.txt")  # fmt: skip
    assert res.stdout == "absolute\nabsolute\nrelative\nabsolute\nrelative\n"
    missing = kiln("copy", name, str(outside / "nope"), "/", check=False, cwd=work)
    assert missing.returncode == 125 and "nope" in missing.stderr


def test_copy_of_a_link_leading_nowhere_in_the_context_is_one_clear_error(kiln, tmp_path):
    """A source that is a link which, followed inside its context, leads nowhere (dangling,
    out of the context, a loop) is refused with one line; nothing outside is read."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("secret\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "dangling").symlink_to("nowhere")
    (ctx / "out").symlink_to(victim / "secret")
    (ctx / "loop1").symlink_to("loop2")
    (ctx / "loop2").symlink_to("loop1")
    name = kiln("from", "busybox").stdout.strip()
    for flags in ((), ("--contextdir", str(ctx))):
        for src in ("dangling", "out", "loop1", "loop*"):
            res = kiln("copy", *flags, name, src, "/x", check=False, cwd=ctx)
            assert res.returncode == 125, (flags, src, res.stderr)
            assert "symbolic link that leads to nothing inside the context" in res.stderr
            assert res.stderr.count("\n") == 1  # one clear line, no traceback
    assert kiln("diff", name).stdout == ""


def _committed_config(kiln, tmp_path, image: str) -> dict:
    out = tmp_path / "pushed"
    kiln("push", "-q", image, f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_text())
    return json.loads((out / manifest["config"]["digest"].split(":")[1]).read_text())


def test_config_host_domain_names_and_os_requirements_like_buildah(kiln, tmp_path):
    """buildah config --hostname, --domainname, --os-version and --os-feature (FEATURE-
    removes) reach the committed config as buildah writes them; '' removes a name."""
    name = kiln("from", "busybox").stdout.strip()
    kiln("config", "--hostname", "hn", "--domainname", "example.test", "--os-version", "10.0.1",
         "--os-feature", "f1", "--os-feature", "f2", "--os-feature", "f1-", name)  # fmt: skip
    kiln("commit", "-q", "--format", "docker", name, "named:1")
    config = _committed_config(kiln, tmp_path, "named:1")
    assert (config["config"]["Hostname"], config["config"]["Domainname"]) == ("hn", "example.test")
    assert (config["os.version"], config["os.features"]) == ("10.0.1", ["f2"])
    kiln("config", "--hostname", "", "--domainname", "", name)
    kiln("commit", "-q", "--format", "docker", name, "named:2")
    config = _committed_config(kiln, tmp_path / "2", "named:2")
    assert "Hostname" not in config["config"] and "Domainname" not in config["config"]


def test_containers_filter_and_format_like_buildah(kiln):
    """kiln containers --filter id=/name=/ancestor= (all must match) and --format with
    buildah's template fields; an unknown filter is one clear error."""
    first = kiln("from", "--name", "alpha-one", "busybox").stdout.strip()
    kiln("from", "--name", "beta", "busybox")
    rows = {r["containername"]: r for r in json.loads(kiln("containers", "--json").stdout)}
    one = rows[first]

    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        res = kiln("containers", *args, "--format", "{{.ContainerName}}")
        return res.stdout.split()

    assert names("name=alpha") == ["alpha-one"]
    assert names(f"id={one['id'][:8]}") == ["alpha-one"]
    assert names("name=a", "id=" + one["id"][:8]) == ["alpha-one"]
    assert names(f"name=beta,id={one['id'][:8]}") == []
    for ancestor in ("busybox", "busybox:latest", "library/busybox", one["imageid"][:6]):
        assert sorted(names(f"ancestor={ancestor}")) == ["alpha-one", "beta"], ancestor
    assert names("ancestor=busybox:other") == []
    line = kiln(
        "containers",
        "--filter",
        "name=alpha",
        "--format",
        "{{.ContainerID}} {{.Builder}} {{.ImageID}} {{.ImageName}}",
    ).stdout
    assert line == f"{one['id']} * {one['imageid']} docker.io/library/busybox:latest\n"
    # -q: the full IDs, as buildah's (its --notruncate is for the table)
    assert kiln("containers", "-q", "--filter", "name=alpha").stdout == f"{one['id']}\n"
    bad = kiln("containers", "--filter", "bogus=1", check=False)
    assert bad.returncode == 125 and "invalid filter" in bad.stderr
    assert bad.stderr.count("\n") == 1


@pytest.mark.runc
@pytest.mark.skipif(not RUNC, reason="no runc")
def test_run_terminal_flag_as_buildah_spells_it(kiln_store, busybox_image, tmp_path):
    """buildah run --terminal (kiln's -t/--tty): the command's output is a terminal."""
    import fcntl
    import termios

    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    kiln_cmd = [sys.executable, "-m", "kiln.cli.main"]
    subprocess.run([*kiln_cmd, "from", "--name", "term", "busybox"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    master, slave = os.openpty()

    def controlling_terminal():  # runc's terminal is the caller's: give kiln one
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            [*kiln_cmd, "run", "--terminal", "term", "--", "sh", "-c", "test -t 1 && echo TTY"],
            env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal,
        )  # fmt: skip
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=120) == 0, out
    finally:
        os.close(master)
        subprocess.run([*kiln_cmd, "rm", "term"], env=env, capture_output=True)
    assert b"TTY" in out


def test_commit_flags_buildah_scripts_use(kiln, tmp_path):
    """buildah commit --unsetenv (the image only), --manifest (the list made, then the
    platform's entry replaced by the next commit) and --identity-label[=false]."""
    name = kiln("from", "busybox").stdout.strip()
    kiln("config", "--env", "KEEP=1", "--env", "DROP=2", name)
    first = kiln("commit", "-q", "--identity-label=false", "--unsetenv", "DROP",
                 "--manifest", "wc-list", name, "wc:1").stdout.strip()  # fmt: skip
    env = _committed_config(kiln, tmp_path / "1", "wc:1")["config"]["Env"]
    assert "KEEP=1" in env and not any(e.startswith("DROP=") for e in env)
    listed = json.loads(kiln("manifest", "inspect", "wc-list").stdout)["manifests"]
    assert len(listed) == 1
    kiln("run", name, "--", "touch", "/changed")
    second = kiln("commit", "-q", "--identity-label", "--manifest", "wc-list", name,
                  "wc:2").stdout.strip()  # fmt: skip
    assert second != first
    env = _committed_config(kiln, tmp_path / "2", "wc:2")["config"]["Env"]
    assert "DROP=2" in env  # the container's own config kept it
    listed = json.loads(kiln("manifest", "inspect", "wc-list").stdout)["manifests"]
    assert len(listed) == 1  # the same platform: replaced, not listed twice
    pushed = tmp_path / "2" / "pushed" / "manifest.json"
    assert listed[0]["digest"] == "sha256:" + hashlib.sha256(pushed.read_bytes()).hexdigest()


def test_from_platform_picks_the_image_and_cidfile(kiln, tmp_path):
    """kiln from --arch/--platform (buildah's): a list's name gives its image for the
    platform, a local image of another platform is missing (never pulled with --pull
    never), scratch's config names it; --cidfile gets the container's ID."""
    arm = kiln("from", "--arch", "arm64", "scratch").stdout.strip()
    kiln("commit", "-q", arm, "plat:arm64")
    amd = kiln("from", "--platform", "linux/amd64", "scratch").stdout.strip()
    kiln("commit", "-q", amd, "plat:amd64")
    kiln("manifest", "create", "plat:list", "plat:arm64", "plat:amd64")
    images = {tag: json.loads(kiln("inspect", "--type", "image", f"plat:{tag}").stdout)[0]["Id"]
              for tag in ("arm64", "amd64")}  # fmt: skip
    assert images["arm64"] != images["amd64"]
    for flags, want in ((("--arch", "arm64"), "arm64"), (("--platform", "linux/amd64"), "amd64")):
        cid_file = tmp_path / f"cid-{want}"
        name = kiln("from", *flags, "--pull", "never", "--cidfile", str(cid_file),
                    "plat:list").stdout.strip()  # fmt: skip
        inspected = json.loads(kiln("inspect", "--type", "container", name).stdout)[0]
        assert inspected["FromImageID"].removeprefix("sha256:") == images[want].removeprefix(
            "sha256:"
        )
        assert cid_file.read_text() == inspected["ContainerID"]
    res = kiln("from", "--arch", "amd64", "--pull", "never", "plat:arm64", check=False)
    assert res.returncode == 125 and "the local one is linux/arm64" in res.stderr
    res = kiln("from", "--arch", "arm64", "--platform", "linux/arm64", "scratch", check=False)
    assert res.returncode == 125 and res.stderr.count("\n") == 1


@pytest.mark.runc
@pytest.mark.skipif(not RUNC, reason="no runc")
def test_run_terminal_without_one_gets_kiln_s_own(kiln_store, busybox_image, tmp_path):
    """kiln run -t in CI (no terminal anywhere): kiln gives the container a terminal of
    its own and relays it, as buildah does; runc alone failed with 'open /dev/tty'. The
    exit code is the command's; stdin reaches it through the terminal."""
    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    kiln_cmd = [sys.executable, "-m", "kiln.cli.main"]
    subprocess.run([*kiln_cmd, "from", "--name", "ci", "busybox"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    script = "test -t 0 && test -t 1 && echo TTY; read line; echo got-$line; exit 7"
    for flag in ("-t", "--terminal"):
        res = subprocess.run(
            [*kiln_cmd, "run", flag, "ci", "--", "sh", "-c", script], env=env,
            input=b"hello\n", capture_output=True, timeout=120, start_new_session=True,
        )  # fmt: skip
        assert res.returncode == 7, res
        assert b"TTY\r\n" in res.stdout and b"got-hello\r\n" in res.stdout, res


def test_config_add_history_reaches_the_committed_history(kiln, tmp_path):
    """buildah config --add-history (or $BUILDAH_HISTORY=true) records an empty-layer entry
    per setting before the commit's own; kiln refused the flag."""
    name = kiln("from", "busybox").stdout.strip()
    kiln("config", "--add-history", "--env", "A=1", "--workingdir", "/srv", name)
    kiln("config", "--user", "1", name)  # no entry: neither the flag nor $BUILDAH_HISTORY
    kiln("config", "--add-history=false", "--label", "x=y", name)
    kiln("commit", "-q", name, "hist:1")
    history = _committed_config(kiln, tmp_path, "hist:1")["history"]
    added = [(h.get("created_by"), h.get("empty_layer")) for h in history[-3:-1]]
    assert added == [("/bin/sh -c #(nop) ENV A=1", True), ("/bin/sh -c #(nop) WORKDIR /srv", True)]
    assert "#(nop)" not in history[-1].get("created_by", "")
    assert sum("#(nop)" in h.get("created_by", "") for h in history) == 2


def test_oci_commit_leaves_out_what_only_docker_configs_have(kiln, tmp_path):
    """buildah config warns that SHELL, HEALTHCHECK, ONBUILD, the comment, Hostname and
    Domainname have no place in an OCI image, and buildah commit --format oci leaves them
    out; --format docker keeps them. kiln wrote them into the OCI config, silently."""
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("config", "--shell", "/bin/bash -c", "--healthcheck", "CMD true", "--onbuild",
               "RUN x", "--comment", "c", "--hostname", "h", "--domainname", "d", name)  # fmt: skip
    for what in ("SHELL", "HEALTHCHECK", "ONBUILD", "COMMENT", "HOSTNAME", "DOMAINNAME"):
        assert f"{what} is not supported for OCI image format" in res.stderr, what
    kiln("commit", "-q", name, "fields:oci")
    oci = _committed_config(kiln, tmp_path / "oci", "fields:oci")
    assert "comment" not in oci
    for key in ("Shell", "Healthcheck", "OnBuild", "Hostname", "Domainname"):
        assert key not in oci["config"], key
    kiln("commit", "-q", "--format", "docker", name, "fields:docker")
    docker = _committed_config(kiln, tmp_path / "docker", "fields:docker")
    assert docker["comment"] == "c" and docker["config"]["OnBuild"] == ["RUN x"]
    assert (docker["config"]["Shell"], docker["config"]["Hostname"]) == (["/bin/bash", "-c"], "h")
    assert docker["config"]["Healthcheck"]["Test"] == ["CMD", "true"]


def test_commit_to_a_transport_writes_only_there(kiln, tmp_path):
    """buildah commit C dir:DIR (oci:, oci-archive:, docker-archive:, docker://) writes the
    image there and keeps no copy in the store; --rm removes the container once it is
    written, and a failed write keeps it. kiln took 'dir:...' for an image name
    ('invalid reference format')."""
    name = kiln("from", "busybox").stdout.strip()
    kiln("run", name, "--", "sh", "-c", "echo committed > /f")
    stored = set(kiln("images", "-q", "-a", "--no-trunc").stdout.split())
    image_id = kiln("commit", "-q", name, f"dir:{tmp_path / 'd'}").stdout.strip()
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["digest"] == f"sha256:{image_id}"
    archive = tmp_path / "img.tar"
    kiln("commit", "-q", name, f"docker-archive:{archive}:localhost/kept:1")
    with tarfile.open(archive) as tar:
        repo_tags = json.load(tar.extractfile("manifest.json"))[0]["RepoTags"]
    assert repo_tags == ["localhost/kept:1"]
    assert set(kiln("images", "-q", "-a", "--no-trunc").stdout.split()) == stored
    failed = kiln("commit", "--rm", name, f"oci-archive:{tmp_path}/no/such/dir/x.tar", check=False)
    assert failed.returncode == 125 and "no/such/dir" in failed.stderr
    assert kiln("containers", "--format", "{{.ContainerName}}").stdout.split() == [name]
    kiln("commit", "-q", "--rm", name, f"oci:{tmp_path / 'layout'}:t")
    assert json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]
    assert kiln("containers", "-q").stdout == ""
    assert set(kiln("images", "-q", "-a", "--no-trunc").stdout.split()) == stored


def test_copy_downloads_a_url_as_buildah_copy_does(kiln, tmp_path):
    """buildah copy C http://.../f DEST downloads f (as add does, an archive left packed);
    kiln refused it ('COPY cannot take a URL'), which stays a Dockerfile COPY's rule."""
    www = tmp_path / "www"
    (www / "t").mkdir(parents=True)
    (www / "t" / "f.txt").write_text("served\n")
    with tarfile.open(www / "a.tar", "w") as tar:
        tar.add(www / "t", arcname="t")
    name = kiln("from", "busybox").stdout.strip()
    with serving(www) as url:
        kiln("copy", name, f"{url}/t/f.txt", "/got.txt")
        kiln("copy", name, f"{url}/a.tar", "/archives/")
    listing = kiln("run", name, "--", "sh", "-c", "cat /got.txt; ls /archives").stdout
    assert listing.split() == ["served", "a.tar"]


def test_rename_as_buildah_renames(kiln):
    """buildah rename C NEW: the container goes on under NEW (same ID); a name another
    container holds and its own name are refused. kiln had no rename verb."""
    first = kiln("from", "--name", "first", "busybox").stdout.strip()
    kiln("from", "--name", "other", "busybox")
    ids = {r["containername"]: r["id"] for r in json.loads(kiln("containers", "--json").stdout)}
    kiln("rename", first, "renamed")
    after = {r["containername"]: r["id"] for r in json.loads(kiln("containers", "--json").stdout)}
    assert after == {"renamed": ids["first"], "other": ids["other"]}
    assert kiln("run", "renamed", "--", "echo", "ok").stdout == "ok\n"
    taken = kiln("rename", "renamed", "other", check=False)
    assert taken.returncode == 125 and 'name "other" is already in use' in taken.stderr
    same = kiln("rename", "renamed", "renamed", check=False)
    assert same.returncode == 125 and "already this container's name" in same.stderr
    # buildah 1.28 takes any name (kiln makes no path of one): the container goes on under it
    kiln("rename", "renamed", "team/app x")
    assert kiln("run", "team/app x", "--", "echo", "ok").stdout == "ok\n"
    names = {r["containername"] for r in json.loads(kiln("containers", "--json").stdout)}
    assert names == {"team/app x", "other"}


def test_inspect_container_has_buildah_s_config_views(kiln):
    """Scripts read buildah inspect's {{.OCIv1.Config.Env}}, {{.Docker.Config.Shell}},
    {{.FromImageDigest}} and {{.History}}; kiln's container had none of them (an OCI view
    without Docker's fields, as buildah's OCIv1 has none)."""
    name = kiln("from", "busybox").stdout.strip()
    kiln("config", "--env", "X=1", "--shell", "/bin/ash -c", name)
    digest = json.loads(kiln("inspect", "--type", "image", "busybox").stdout)[0]["Digest"]
    got = json.loads(kiln("inspect", "--type", "container", name).stdout)
    got = got[0] if isinstance(got, list) else got
    assert got["OCIv1"]["config"]["Env"][-1] == "X=1" and "Shell" not in got["OCIv1"]["config"]
    assert got["Docker"]["config"]["Shell"] == ["/bin/ash", "-c"]
    assert got["FromImageDigest"] == digest
    assert got["History"] and got["History"] == got["Docker"]["history"]
    out = kiln("inspect", "--type", "container", "--format", "{{.OCIv1.Config.Env}}", name)
    assert out.stdout.strip().endswith("X=1]")


def test_mount_json_as_buildah_prints_it(kiln):
    """buildah mount --json: [{"mountPoint"}] for one container, with "container" for
    several and for the listing, null when none is mounted; kiln refused --json."""
    one = kiln("from", "--name", "m1", "busybox").stdout.strip()
    two = kiln("from", "--name", "m2", "busybox").stdout.strip()
    assert kiln("mount", "--json").stdout.strip() == "null"
    path = kiln("mount", one).stdout.strip()
    assert json.loads(kiln("mount", "--json", one).stdout) == [{"mountPoint": path}]
    both = json.loads(kiln("mount", "--json", one, two).stdout)
    assert [r["container"] for r in both] == [one, two] and both[0]["mountPoint"] == path
    listed = json.loads(kiln("mount", "--json").stdout)
    assert sorted(r["container"] for r in listed) == [one, two]
    kiln("umount", "--all")


def test_run_copy_add_history_entries_as_buildah_writes_them(kiln, tmp_path):
    """buildah run/copy/add --add-history (or $BUILDAH_HISTORY) record '/bin/sh -c ARGS'
    for a command that succeeded and '#(nop) COPY file:HEX' (ADD, dir:, multi:) with the
    digest the copy printed; kiln refused the flag. A failed command records nothing, and
    a command's own '--add-history' stays its argument."""
    (tmp_path / "f.txt").write_text("f\n")
    (tmp_path / "d").mkdir()
    name = kiln("from", "busybox").stdout.strip()
    assert kiln("run", name, "echo", "--add-history").stdout == "--add-history\n"
    kiln("run", "--add-history", name, "--", "sh", "-c", "echo x > /r")
    assert kiln("run", "--add-history", name, "false", check=False).returncode == 1
    file_hex = kiln("copy", "--add-history", name, "f.txt", "/f").stdout.strip()
    dir_hex = kiln("add", "--add-history=true", name, "d", "/d").stdout.strip()
    kiln("copy", "--add-history=false", name, "f.txt", "/g")
    wanted = {"BUILDAH_HISTORY": "true"}  # the flag's =false wins over the environment
    kiln("run", "--add-history=false", name, "true", environ=wanted)
    kiln("copy", "--add-history=0", name, "f.txt", "/h", environ=wanted)
    kiln("commit", "-q", name, "hist:2")
    history = _committed_config(kiln, tmp_path / "out", "hist:2")["history"]
    assert [(h["created_by"], h.get("empty_layer")) for h in history[-4:-1]] == [
        ("/bin/sh -c sh -c echo x > /r", True),
        (f"/bin/sh -c #(nop) COPY file:{file_hex}", True),
        (f"/bin/sh -c #(nop) ADD dir:{dir_hex}", True),
    ]
    assert "#(nop)" not in history[-1]["created_by"] and len(history) == 5
