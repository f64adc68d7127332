"""kiln as a non-root user: a user namespace from /etc/subuid and /etc/subgid, the store in
``~/.local/share/kiln``, RUN with runc or chroot isolation, and images whose layers keep the
ids the image gives its files (uid 0 is the user on disk, uid N is subordinate base + N - 1).
podman (root) runs what the user built."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_images"]
from fixtures_images import make_busybox_rootfs  # noqa: E402
from rootless_user import (  # noqa: E402
    APP_UID,
    CONTAINERFILE,
    layer_members,
    make_user,
    remove_user,
    subid_range,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    u = make_user(str(tmp_path_factory.mktemp("rootless-hold")))
    try:
        ctx = os.path.join(u.home, "ctx")
        os.makedirs(ctx)
        Path(ctx, "Containerfile").write_text(CONTAINERFILE)
        Path(ctx, "hello.txt").write_text("hello\n")
        make_busybox_rootfs(os.path.join(u.home, "busybox.tar"))
        u.give(u.home)
        u.kiln("import", os.path.join(u.home, "busybox.tar"), "busybox:latest")
        yield u
    finally:
        remove_user(u)


def _find(top: str, name: str) -> list[str]:
    return [os.path.join(r, name) for r, _d, files in os.walk(top) if name in files]


def test_user_builds_run_copy_user_and_podman_runs_it(user, podman, tmp_path):
    out = user.kiln("build", "-t", "rootless:1", os.path.join(user.home, "ctx")).stdout
    assert f"\n{APP_UID}\n" in out  # the last RUN ran as the image's user

    # the user's default store, owned by the user; the image's ids mapped on disk
    assert os.stat(user.store).st_uid == user.uid
    base = subid_range("/etc/subuid", user.name)
    assert base is not None
    made = _find(os.path.join(user.store, "snapshots"), "user.txt")
    assert made, "the RUN's file is not in the user's store"
    assert {os.stat(p).st_uid for p in made} == {base[0] + APP_UID - 1}
    root_made = _find(os.path.join(user.store, "snapshots"), "root-owned.txt")
    assert root_made and {os.stat(p).st_uid for p in root_made} == {user.uid}

    # the layers carry the image's ids, not the user's or the subordinate ones
    archive = os.path.join(user.home, "rootless.tar")
    user.kiln("save", "-o", archive, "rootless:1")
    members = layer_members(archive)
    owners = {n: (members[n].uid, members[n].gid) for n in
              ("data", "data/run.txt", "data/hello.txt", "data/user.txt", "home/app",
               "root-owned.txt", "etc/passwd")}  # fmt: skip
    app, root = (APP_UID, APP_UID), (0, 0)
    assert owners == {
        "data": app, "data/run.txt": root, "data/hello.txt": app, "data/user.txt": app,
        "home/app": app, "root-owned.txt": root, "etc/passwd": root,
    }  # fmt: skip
    # what the RUN deleted is deleted in the image (whiteout, opaque directory)
    assert "gone/.wh..wh..opq" in members and "bin/.wh.ls" in members

    # podman (root) runs it
    copy = str(tmp_path / "rootless.tar")
    shutil.copy(archive, copy)
    podman("load", "-i", copy)
    ran = podman(*podman.run_args(), "localhost/rootless:1").stdout.split()
    assert ran == [str(APP_UID), "user-made", f"{APP_UID}:{APP_UID}", "0:0"]


def test_user_builds_with_chroot_isolation(user):
    out = user.kiln(
        "build", "--isolation", "chroot", "--no-cache", "-t", "rootless:chroot",
        os.path.join(user.home, "ctx"),
    ).stdout  # fmt: skip
    assert f"\n{APP_UID}\n" in out
    archive = os.path.join(user.home, "chroot.tar")
    user.kiln("save", "-o", archive, "rootless:chroot")
    members = layer_members(archive)
    assert (members["data/user.txt"].uid, members["data"].uid) == (APP_UID, APP_UID)
    assert members["data/run.txt"].uid == 0


def test_user_builds_with_the_copy_driver_and_without_cgroups(user):
    # where overlayfs cannot mount, snapshots are copies; runc has no cgroup to limit
    out = user.kiln(
        "build", "--memory", "64m", "--no-cache", "-t", "rootless:copy",
        os.path.join(user.home, "ctx"), env={"KILN_SNAPSHOT_DRIVER": "copy"},
    )  # fmt: skip
    assert f"\n{APP_UID}\n" in out.stdout
    assert "resource limits (--memory, --cpu-*) are ignored by rootless kiln" in out.stderr
    archive = os.path.join(user.home, "copy.tar")
    user.kiln("save", "-o", archive, "rootless:copy")
    members = layer_members(archive)
    assert (members["data/user.txt"].uid, members["root-owned.txt"].uid) == (APP_UID, 0)
    # a two-tree diff says "deleted" file by file
    assert "gone/.wh.sub" in members and "bin/.wh.ls" in members


def test_user_images_push_rmi_pull(user, registry_plain):  # noqa: F811
    user.kiln("build", "-q", "-t", "rootless:push", os.path.join(user.home, "ctx"))
    listed = user.kiln("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "localhost/rootless:push" in listed
    ref = f"{registry_plain.host}/rootless/app:1"
    user.kiln("push", "--tls-verify=false", "rootless:push", ref)
    pushed = user.kiln("inspect", "--format", "{{.Id}}", "rootless:push").stdout.strip()
    user.kiln("rmi", "rootless:push")
    listed = user.kiln("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "localhost/rootless:push" not in listed
    user.kiln("pull", "--tls-verify=false", ref)
    pulled = user.kiln("inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert pulled == pushed
    user.kiln("rmi", ref)
    assert ref not in user.kiln("images", "--format", "{{.Repository}}:{{.Tag}}").stdout


def test_user_without_subordinate_ids_gets_one_clear_error(tmp_path):
    u = make_user(str(tmp_path / "hold"), subids=False)
    try:
        proc = u.kiln("images", check=False)
        assert proc.returncode == 125
        assert "Traceback" not in proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error: rootless kiln needs subordinate ids")
        assert "/etc/subuid" in err[0] and "usermod --add-subuids" in err[0]
        # commands that keep no state still work
        assert u.kiln("version").returncode == 0
    finally:
        remove_user(u)


def _get_unix(sock_path: str, path: str) -> tuple[int, bytes]:
    import http.client
    import socket

    class _Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(sock_path)

    conn = _Conn("localhost", timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_user_serves_the_api_on_a_socket_of_its_own(user):
    import subprocess
    import time

    run_dir = os.path.join(user.home, "run")
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    user.give(run_dir)
    sock = os.path.join(run_dir, "kiln", "kiln.sock")
    cmd = user.command(
        [sys.executable, "-m", "kiln.cli.main", "serve", "--time", "20"],
        env={"XDG_RUNTIME_DIR": run_dir},
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # the socket file appears on bind(), a moment before listen()
            assert proc.poll() is None, proc.communicate(timeout=10)
            assert time.monotonic() < deadline, "kiln serve did not listen within 60 s"
            try:
                status, body = _get_unix(sock, "/v1.41/images/json")
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.2)
        assert os.stat(sock).st_uid == user.uid
        assert status == 200
        tags = {t for image in json.loads(body) for t in image.get("RepoTags") or []}
        assert "localhost/busybox:latest" in tags or "busybox:latest" in tags
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode in (0, 130, 143, -15), proc.returncode


def test_user_logs_in_and_pushes_to_a_registry_with_auth(user, registry_basic):  # noqa: F811
    reg = registry_basic
    user.kiln("build", "-q", "-t", "rootless:auth", os.path.join(user.home, "ctx"))
    ref = f"{reg.host}/rootless/auth:1"
    user.kiln("login", "--tls-verify=false", "-u", reg.username, "-p", reg.password, reg.host)
    user.kiln("push", "--tls-verify=false", "rootless:auth", ref)
    user.kiln("logout", reg.host)
    denied = user.kiln("push", "--tls-verify=false", "rootless:auth", ref, check=False)
    assert denied.returncode == 125
    assert denied.stderr.rstrip().endswith(": unauthorized: authentication required"), denied.stderr


def test_user_removes_a_store_through_kiln_unshare(user):
    store = os.path.join(user.home, "second-store")
    user.kiln("--root", store, "import", os.path.join(user.home, "busybox.tar"), "busybox:latest")
    user.kiln("--root", store, "build", "-q", "-t", "x", os.path.join(user.home, "ctx"))
    inside = user.kiln("--root", store, "unshare", "sh", "-c", 'id -u; echo "$KILN_ROOT"')
    assert inside.stdout.split() == ["0", store]
    # the image's uid 1234 is a subordinate id on disk: the user alone cannot remove it
    assert user.run(["rm", "-rf", store], timeout=60).returncode != 0
    user.kiln("--root", store, "unshare", "rm", "-rf", store)
    assert not os.path.exists(store)
    missing = user.kiln("unshare", "no-such-command", check=False)
    assert missing.returncode == 127
    assert missing.stderr.strip().splitlines() == [
        'Error: exec: "no-such-command": executable file not found in $PATH'
    ]
