"""Pulls through ``kiln serve``: ``docker pull -a`` and docker-py ``all_tags=True`` pull every
tag; libpod's pull honours ``policy=missing|never|newer|always`` (a local image satisfies
missing and never without the registry; never refuses a missing one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CALL_TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def env(tmp_path_factory, registry_plain):  # noqa: F811
    tmp = tmp_path_factory.mktemp("pull-tags")
    proc, sock = start_server(tmp)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))
    env.pop("DOCKER_BUILDKIT", None)
    (tmp / "dc").mkdir()
    (tmp / "rootfs.tar").write_bytes(busybox_sh_tar())
    repo = f"{registry_plain.host}/pull-tags/multi"
    docker(env, "import", str(tmp / "rootfs.tar"), "base:1")
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base:1\nLABEL second=yes\n")
    docker(env, "build", "-t", f"{repo}:b", str(ctx))
    docker(env, "tag", "base:1", f"{repo}:a")
    docker(env, "push", f"{repo}:a")
    docker(env, "push", f"{repo}:b")
    docker(env, "rmi", f"{repo}:a", f"{repo}:b")
    try:
        yield env, sock, repo
    finally:
        assert stop_server(proc) == 0


def docker(env: dict, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    if ok:
        assert r.returncode == 0, (args, r.stderr)
    return r


def tags_of(env: dict, repo: str) -> set[str]:
    out = docker(env, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    tags = {n.rsplit(":", 1)[1] for n in out if n.rsplit(":", 1)[0] == repo}
    return tags - {"<none>"}  # an untagged image keeps its repo digest, as with dockerd


def test_docker_pull_all_tags(env):
    env_, _sock, repo = env
    assert tags_of(env_, repo) == set()
    docker(env_, "pull", "-a", repo)
    assert tags_of(env_, repo) == {"a", "b"}
    docker(env_, "rmi", f"{repo}:a", f"{repo}:b")


def test_dockerpy_pull_all_tags(env):
    docker_py = pytest.importorskip("docker")
    env_, sock, repo = env
    c = docker_py.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=CALL_TIMEOUT)
    try:
        pulled = c.images.pull(repo, all_tags=True)
        assert sorted(t for i in pulled for t in i.tags if t.startswith(repo)) == [
            f"{repo}:a",
            f"{repo}:b",
        ]
        c.images.remove(f"{repo}:b")
        c.images.pull(repo, "a")  # a tag: that tag only
        assert not [t for i in c.images.list() for t in i.tags if t == f"{repo}:b"]
    finally:
        c.close()
    docker(env_, "rmi", f"{repo}:a")


def libpod_pull(sock: str, reference: str, **params: str) -> list[dict]:
    query = urllib.parse.urlencode({"reference": reference, "tlsVerify": "false", **params})
    r = subprocess.run(["curl", "-sS", "--max-time", str(CALL_TIMEOUT), "--unix-socket", sock,
                        "-X", "POST", f"http://d/v4.0.0/libpod/images/pull?{query}"],
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_libpod_pull_policy(env):
    env_, sock, repo = env
    local_only = f"{repo.rsplit('/', 1)[0]}/local-only:1"  # never pushed
    docker(env_, "tag", "base:1", local_only)
    out = libpod_pull(sock, local_only, policy="missing")
    assert "error" not in out[-1] and out[-1]["images"], out
    out = libpod_pull(sock, local_only, policy="never")
    assert "error" not in out[-1], out
    out = libpod_pull(sock, local_only, policy="always")
    assert "manifest unknown" in json.dumps(out), out
    out = libpod_pull(sock, f"{repo}:not-here", policy="never")
    assert "pull policy is never" in (out[-1].get("error") or out[-1].get("message", "")), out
    out = libpod_pull(sock, f"{repo}:a", policy="newer")
    assert "error" not in out[-1], out
    out = libpod_pull(sock, repo, allTags="true")
    assert len(out[-1]["images"]) == 2, out
    out = libpod_pull(sock, f"{repo}:a", policy="sometimes")
    assert "policy" in json.dumps(out), out
