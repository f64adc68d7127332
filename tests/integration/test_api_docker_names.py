"""Names through Docker clients: a short name means Docker Hub, as dockerd reads it, whether
it comes from ``docker tag``, ``docker build -t``, ``docker import`` or docker-py; answers
show ``localhost/`` names with their prefix, as dockerd and podman do."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CALL_TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docker-names")
    proc, sock = start_server(tmp)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))
    env.pop("DOCKER_BUILDKIT", None)
    (tmp / "dc").mkdir()
    try:
        yield tmp, sock, env
    finally:
        assert stop_server(proc) == 0


def docker(env: dict, *args: str) -> str:
    r = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def rows(env: dict) -> list[str]:
    out = docker(env, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    return sorted(out.split("\n")[:-1])


def test_docker_tag_and_build_name_the_same_image(server):
    tmp, _sock, env = server
    (tmp / "rootfs.tar").write_bytes(busybox_sh_tar())
    docker(env, "import", str(tmp / "rootfs.tar"), "base:1")
    base_id = docker(env, "image", "inspect", "--format", "{{.Id}}", "base:1").strip()
    docker(env, "tag", "base:1", "amb:1")
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base:1\nLABEL built=yes\n")
    docker(env, "build", "-t", "amb:1", str(ctx))  # moves amb:1 to the built image
    built = docker(env, "image", "inspect", "--format", "{{.Id}} {{.RepoTags}}", "amb:1").split()
    assert built[0] != base_id and built[1:] == ["[amb:1]"]
    assert [r.split()[0] for r in rows(env)].count("amb:1") == 1
    docker(env, "build", "-t", "localhost/app:1", str(ctx))
    assert "localhost/app:1" in [r.split()[0] for r in rows(env)]
    tags = docker(env, "image", "inspect", "--format", "{{json .RepoTags}}", "localhost/app:1")
    assert "localhost/app:1" in tags


def test_dockerpy_tag_and_build_agree(server):
    docker_py = pytest.importorskip("docker")
    tmp, sock, env = server
    c = docker_py.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=CALL_TIMEOUT)
    try:
        assert c.images.get("base:1").tag("pyamb", "2")
        (tmp / "ctx2").mkdir()
        (tmp / "ctx2" / "Dockerfile").write_text("FROM base:1\nLABEL py=yes\n")
        image, _logs = c.images.build(path=str(tmp / "ctx2"), tag="pyamb:2")
        assert c.images.get("pyamb:2").id == image.id
        names = [t for i in c.images.list() for t in i.tags]
        assert names.count("pyamb:2") == 1
    finally:
        c.close()
