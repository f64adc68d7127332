"""Pulls through ``kiln serve`` pick the platform a client asks for from a manifest list:
the docker CLI's ``docker pull --platform`` and docker-py's ``platform=`` (Docker API
``platform``), ``podman --remote pull --arch`` and libpod's ``Arch``/``OS``/``Variant`` (in any case, as
podman's bindings send them lowercase), ``retry`` and ``retryDelay``;
a platform that does not parse is a 400 before anything is pulled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse

import pytest

from api_server import start_server, stop_server
from fixtures_images import make_list
from kiln.ops import manifests
from kiln.ops.context import open_context
from kiln.registry import RegistryOptions

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
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


def libpod_pull(sock: str, reference: str, **params: str) -> tuple[int, list[dict]]:
    query = urllib.parse.urlencode({"reference": reference, "tlsVerify": "false", **params})
    r = subprocess.run(["curl", "-sS", "--max-time", str(CALL_TIMEOUT), "--unix-socket", sock,
                        "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                        f"http://d/v4.0.0/libpod/images/pull?{query}"],
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    *lines, status = r.stdout.splitlines()
    body = "\n".join(lines)
    try:
        objs = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError:
        objs = [json.loads(body)]
    return int(status), objs


def test_libpod_pull_arch_os_variant(served_list, tmp_path):
    sock, ref, amd, arm = served_list
    status, out = libpod_pull(sock, ref, Arch="arm64", OS="linux", Variant="v8", retry="0")
    assert status == 200 and out[-1].get("id") == arm.id.removeprefix("sha256:"), out
    status, out = libpod_pull(sock, ref, Arch="amd64")
    assert status == 200 and out[-1].get("id") == amd.id.removeprefix("sha256:"), out
    status, out = libpod_pull(sock, ref, Arch="arm64", retry="2", retryDelay="1s")
    assert status == 200 and out[-1].get("id") == arm.id.removeprefix("sha256:"), out
    for bad in ({"retry": "-1"}, {"retryDelay": "soon"}, {"Arch": "arm64/v8/x"}):
        status, out = libpod_pull(sock, ref, **bad)
        assert status == 400, (bad, out)
        assert next(iter(bad.values())) in json.dumps(out), (bad, out)


def test_libpod_pull_retry_and_retry_delay_are_honoured(served_list):
    sock = served_list[0]
    dead = "127.0.0.1:1/nobody/here:1"  # connection refused at once: only the waits count
    libpod_pull(sock, dead, retry="0")  # the server loads the pull's modules once
    started = time.monotonic()
    status, out = libpod_pull(sock, dead, retry="0")
    once = time.monotonic() - started
    assert "refused" in json.dumps(out), out
    started = time.monotonic()
    libpod_pull(sock, dead, retry="3", retryDelay="1s")
    thrice = time.monotonic() - started
    # retry=0: one attempt (https, then http for a loopback registry), no wait; the default
    # waits 2 s then 4 s. retry=3 with a fixed 1 s: three waits of 1 s, once for both
    # schemes (a doubling backoff from 1 s would wait 1 + 2 + 4 = 7 s)
    assert once < 1.5, once
    assert 2.9 <= thrice < 6, (once, thrice)


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_podman_remote_pull_arch(served_list, tmp_path):
    sock, ref, _amd, arm = served_list
    r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", "pull", "--tls-verify=false",
                        "--arch", "arm64", ref],
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == arm.id.removeprefix("sha256:")
    # podman 4's bindings send "alltags" (and "arch"), which podman's server matches in
    # any case: every tag of the repository, not "latest" (which it does not have)
    repo = ref.rsplit(":", 1)[0]
    r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", "pull", "--tls-verify=false",
                        "--all-tags", "--arch", "arm64", repo],
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert arm.id.removeprefix("sha256:") in r.stdout.split()
