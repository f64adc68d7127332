"""Image events of every kiln process on a store: a CLI ``kiln tag`` next to ``kiln serve``
shows up in a running ``docker events`` (the real docker CLI), in docker-py's
``events(decode=True)`` with since/until, in ``podman --remote events`` and in
``kiln events``; and the server's own operations show up in ``kiln events``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
CALL_TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("events")
    proc, sock = start_server(tmp)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))
    env.pop("DOCKER_BUILDKIT", None)
    (tmp / "dc").mkdir()
    (tmp / "rootfs.tar").write_bytes(busybox_sh_tar())
    kiln(tmp, "import", str(tmp / "rootfs.tar"), "base:1")
    try:
        yield {"tmp": tmp, "sock": sock, "env": env}
    finally:
        assert stop_server(proc) == 0


def kiln(tmp: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(tmp / "root"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout


def _read_lines(proc: subprocess.Popen, into: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.append(line)


def _wait_for(lines: list[str], text: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in lines):
            return True
        time.sleep(0.1)
    return False


def test_a_cli_tag_shows_in_a_running_docker_events(env):
    watcher = subprocess.Popen(
        [DOCKER, "events", "--format", "{{json .}}"],
        env=env["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(watcher, lines), daemon=True)
    reader.start()
    try:
        # docker events shows only what happens after it has connected: tag a probe until
        # the watcher sees one (a fixed sleep missed the tag on a slow machine)
        for n in range(30):
            kiln(env["tmp"], "tag", "base:1", f"probe-{n}:1")
            if _wait_for(lines, f"probe-{n}:1", timeout=2):
                break
        else:
            pytest.fail(f"docker events never showed a probe tag: {lines}")
        kiln(env["tmp"], "tag", "base:1", "watched:1")
        kiln(env["tmp"], "rmi", "watched:1")
        assert _wait_for(lines, "watched"), lines
        assert _wait_for(lines, '"untag"'), lines
    finally:
        watcher.terminate()
        watcher.wait(CALL_TIMEOUT)
    events = [json.loads(line) for line in lines]
    tag = next(e for e in events if e["Action"] == "tag" and "watched" in str(e))
    assert tag["Type"] == "image" and tag["Actor"]["Attributes"]["name"] == "localhost/watched:1"
    assert tag["id"] == tag["Actor"]["ID"] and tag["id"].startswith("sha256:")


def test_dockerpy_events_since_until_include_other_processes(env):
    docker_py = pytest.importorskip("docker")
    c = docker_py.DockerClient(base_url=f"unix://{env['sock']}", version="auto",
                               timeout=CALL_TIMEOUT)  # fmt: skip
    try:
        before = time.time()
        time.sleep(0.05)
        kiln(env["tmp"], "tag", "base:1", "py-window:1")
        c.images.get("base:1").tag("py-window", "2")  # through the server
        time.sleep(0.05)
        after = time.time()
        kiln(env["tmp"], "tag", "base:1", "py-later:1")
        got = list(c.events(since=before, until=after, decode=True))
        names = [e["Actor"]["Attributes"].get("name") for e in got if e["Action"] == "tag"]
        # (a Docker client's short name is Docker Hub's, shown familiar, as dockerd shows it)
        assert names == ["localhost/py-window:1", "py-window:2"], got
        # filters apply to the journal's events too
        only = list(c.events(since=before, until=time.time(), decode=True,
                             filters={"event": "tag", "image": "localhost/py-later:1"}))  # fmt: skip
        assert [e["Actor"]["Attributes"]["name"] for e in only] == ["localhost/py-later:1"]
    finally:
        c.close()


def test_kiln_events_shows_the_servers_operations(env):
    since = f"{time.time():.3f}"
    r = subprocess.run([DOCKER, "tag", "base:1", "from-docker:1"], env=env["env"],
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = kiln(env["tmp"], "events", "--since", since, "--no-stream", "--format", "json")
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events] == [
        ("tag", "docker.io/library/from-docker:1")
    ]
    plain = kiln(env["tmp"], "events", "--since", since, "--until", f"{time.time():.3f}")
    # podman's line: time, type, status, ID (no sha256:), name
    assert re.search(r" image tag [0-9a-f]{64} docker.io/library/from-docker:1$", plain, re.M)


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_podman_remote_events_sees_a_cli_tag(env):
    since = f"{time.time() - 0.5:.3f}"
    kiln(env["tmp"], "tag", "base:1", "for-podman:1")
    kiln(env["tmp"], "rmi", "for-podman:1")
    r = subprocess.run(
        [PODMAN, "--url", f"unix://{env['sock']}", "events", "--stream=false", "--since",
         since, "--filter", "type=image", "--format", "{{.Status}} {{.Name}}"],
        capture_output=True, text=True, timeout=CALL_TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "tag localhost/for-podman:1" in lines and "untag localhost/for-podman:1" in lines, lines
