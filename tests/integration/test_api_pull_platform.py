"""Pulls through ``kiln serve`` pick the platform a client asks for from a manifest list:
the docker CLI's ``docker pull --platform`` and docker-py's ``platform=`` (Docker API
``platform``); a platform that does not parse is a 400 before anything is pulled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from api_server import start_server, stop_server
from fixtures_images import make_list
from kiln.ops import manifests
from kiln.ops.context import open_context
from kiln.registry import RegistryOptions
from registry_servers import registry_plain  # noqa: F401

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CALL_TIMEOUT = 120


@pytest.fixture
def served_list(tmp_path, registry_plain, two_platforms):  # noqa: F811
    """A two-platform list in the registry, and ``kiln serve`` on an empty store."""
    amd, arm = two_platforms
    make_list(amd.store.root, "localhost/plat:1")
    ref = f"{registry_plain.host}/api-platform/bb:{tmp_path.name[-12:]}"
    with open_context(amd.store.root) as ctx:
        manifests.push(ctx, "localhost/plat:1", f"docker://{ref}",
                       options=RegistryOptions(tls_verify=False))  # fmt: skip
    server = tmp_path / "server"
    server.mkdir()
    proc, sock = start_server(server)
    try:
        yield sock, ref, amd, arm
    finally:
        assert stop_server(proc) == 0


def docker(sock: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "dc"))
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip


def inspect_id_arch(sock: str, tmp_path, ref: str) -> tuple[str, str]:
    r = docker(sock, tmp_path, "image", "inspect", ref)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)[0]
    return obj["Id"], obj["Architecture"]


def test_docker_pull_platform_stores_that_platforms_image(served_list, tmp_path):
    sock, ref, amd, arm = served_list
    r = docker(sock, tmp_path, "pull", "--platform", "linux/arm64", ref)
    assert r.returncode == 0, r.stderr
    assert inspect_id_arch(sock, tmp_path, ref) == (arm.id, "arm64")
    assert docker(sock, tmp_path, "rmi", ref).returncode == 0

    docker_py = pytest.importorskip("docker")
    c = docker_py.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=CALL_TIMEOUT)
    try:
        repo, tag = ref.rsplit(":", 1)
        assert c.images.pull(repo, tag, platform="linux/arm64").id == arm.id
        assert c.images.pull(repo, tag, platform="linux/amd64").id == amd.id
        with pytest.raises(docker_py.errors.APIError) as bad:
            c.images.pull(repo, tag, platform="linux/arm64/v8/extra")
        assert bad.value.status_code == 400
        assert "linux/arm64/v8/extra" in str(bad.value)
        assert "os/arch[/variant]" in str(bad.value)
    finally:
        c.close()
    r = docker(sock, tmp_path, "pull", "--platform", "linux//arm64", ref)
    assert r.returncode != 0
    assert 'invalid platform "linux//arm64"' in r.stderr and "Traceback" not in r.stderr
