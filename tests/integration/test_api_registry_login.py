"""Registry credentials through ``kiln serve``: ``docker login`` (``POST /auth``), docker-py
``login()``, ``podman --remote login``, then push, pull and a build pulling its base, against
a local ``docker-registry`` with htpasswd. The server keeps no credentials: they come with
each request (X-Registry-Auth, podman's per-registry map in it, X-Registry-Config)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_server import busybox_sh_tar, start_server, stop_server
from registry_servers import RegistryServer

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
CALL_TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


class Env:
    def __init__(self, tmp: Path, sock: str, registry: RegistryServer, client_env: dict):
        self.tmp, self.sock, self.registry, self.client_env = tmp, sock, registry, client_env

    def docker(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self.client_env, input=input,
                              stdin=None if input else subprocess.DEVNULL,
                              capture_output=True, timeout=CALL_TIMEOUT)  # fmt: skip

    def podman(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [PODMAN or "podman", "--remote", "--url", f"unix://{self.sock}", *args]
        return subprocess.run(cmd, env=self.client_env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip

    def dockerpy(self):
        docker = pytest.importorskip("docker")
        return docker.DockerClient(base_url=f"unix://{self.sock}", version="auto",
                                   timeout=CALL_TIMEOUT)  # fmt: skip

    def raw(
        self, method: str, path: str, headers: dict | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.settimeout(CALL_TIMEOUT)
                conn.sock.connect(self.sock)

        c = Conn("kiln", timeout=CALL_TIMEOUT)
        try:
            c.request(method, path, body=body, headers=headers or {})
            resp = c.getresponse()
            return resp.status, resp.read()
        finally:
            c.close()

    def server_auth_files(self) -> list[str]:
        found = []
        for base in (self.tmp / "home", self.tmp / "run"):
            for dirpath, _dirs, files in os.walk(base):
                found += [os.path.join(dirpath, f) for f in files if f.endswith(".json")]
        return found


@pytest.fixture(scope="module")
def env(tmp_path_factory, registry_basic) -> Iterator[Env]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("api-login")
    conf = tmp / "registries.conf"
    conf.write_text(
        "unqualified-search-registries = []\n"
        f'[[registry]]\nlocation = "{registry_basic.host}"\ninsecure = true\n'
    )
    (tmp / "home").mkdir()
    (tmp / "run").mkdir()
    server_env = dict(os.environ, KILN_REGISTRIES_CONF=str(conf), HOME=str(tmp / "home"),
                      XDG_RUNTIME_DIR=str(tmp / "run"), KILN_RUNTIME_DIR=str(tmp / "runtime"))  # fmt: skip
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "DOCKER_HOST"):
        server_env.pop(var, None)
    proc, sock = start_server(tmp, env=server_env)
    client_env = dict(server_env, DOCKER_HOST=f"unix://{sock}", HOME=str(tmp / "client-home"),
                      DOCKER_CONFIG=str(tmp / "docker-config"),
                      REGISTRY_AUTH_FILE=str(tmp / "podman-auth.json"),
                      XDG_RUNTIME_DIR=str(tmp / "client-run"))  # fmt: skip
    client_env.pop("DOCKER_BUILDKIT", None)
    for d in ("docker-config", "client-home", "client-run"):
        (tmp / d).mkdir()
    (tmp / "docker-config" / "config.json").write_text("{}")
    e = Env(tmp, sock, registry_basic, client_env)
    rootfs = tmp / "rootfs.tar"
    rootfs.write_bytes(busybox_sh_tar())
    r = e.docker("import", str(rootfs), "base:1")
    assert r.returncode == 0, r.stderr.decode()
    try:
        yield e
    finally:
        assert stop_server(proc) == 0


def test_docker_login_push_pull_and_build_from_the_private_registry(env):
    reg = env.registry
    r = env.docker("login", reg.host, "-u", reg.username, "--password-stdin",
                   input=b"wrong-password\n")  # fmt: skip
    assert r.returncode != 0 and b"unauthorized" in r.stderr.lower(), r.stderr
    r = env.docker("login", reg.host, "-u", reg.username, "--password-stdin",
                   input=reg.password.encode() + b"\n")  # fmt: skip
    assert r.returncode == 0 and b"Login Succeeded" in r.stdout, r.stderr
    repo = f"{reg.host}/login/cli"
    for args in (("tag", "base:1", f"{repo}:1"), ("push", f"{repo}:1"), ("rmi", f"{repo}:1"),
                 ("pull", f"{repo}:1")):  # fmt: skip
        r = env.docker(*args)
        assert r.returncode == 0, (args, r.stderr.decode())
    ctx = env.tmp / "ctx-cli"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {repo}:1\nLABEL built=yes\n")
    r = env.docker("build", "--pull", "-t", "from-private:1", str(ctx))  # X-Registry-Config
    assert r.returncode == 0, r.stderr.decode()
    assert env.server_auth_files() == []  # the client keeps the credentials, not the server


def test_build_without_credentials_is_refused_by_the_registry(env):
    reg = env.registry
    r = env.docker("tag", "base:1", f"{reg.host}/login/anon:1")
    assert r.returncode == 0
    ctx = env.tmp / "ctx-anon"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {reg.host}/login/cli:1\n")
    anon = dict(env.client_env, DOCKER_CONFIG=str(env.tmp / "empty-config"))
    os.makedirs(anon["DOCKER_CONFIG"], exist_ok=True)
    r = subprocess.run([DOCKER, "build", "--pull", "-t", "anon:1", str(ctx)], env=anon,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode != 0 and b"unauthorized" in r.stderr.lower(), r.stderr


def _push_and_pull_back(client, repo: str, auth: dict) -> None:
    """docker-py pushes base:1 as ``repo``:1 with ``auth``, drops it and pulls it back
    with ``auth``: the same image."""
    client.images.get("base:1").tag(repo, "1")
    lines = list(client.api.push(repo, "1", auth_config=auth, stream=True, decode=True))
    assert not [x for x in lines if "error" in x], lines
    client.images.remove(f"{repo}:1")
    assert client.images.pull(repo, "1", auth_config=auth).id == client.images.get("base:1").id


def test_dockerpy_login_push_and_pull(env):
    import docker.errors

    reg = env.registry
    c = env.dockerpy()
    try:
        with pytest.raises(docker.errors.APIError, match="unauthorized"):
            c.login(username=reg.username, password="nope", registry=reg.host, reauth=True)
        answer = c.login(username=reg.username, password=reg.password, registry=reg.host)
        assert answer["Status"] == "Login Succeeded"
        auth = {"username": reg.username, "password": reg.password}
        _push_and_pull_back(c, f"{reg.host}/login/py", auth)
    finally:
        c.close()
    assert env.server_auth_files() == []


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
def test_podman_remote_login_push_and_pull(env):
    reg = env.registry
    r = env.podman("login", "--tls-verify=false", "-u", reg.username, "-p", reg.password, reg.host)
    assert r.returncode == 0, r.stderr.decode()
    dest = f"{reg.host}/login/podman:1"
    r = env.podman("push", "--tls-verify=false", "base:1", dest)
    assert r.returncode == 0, r.stderr.decode()
    r = env.podman("pull", "--tls-verify=false", dest)
    assert r.returncode == 0, r.stderr.decode()


def _header(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


def test_libpod_pull_with_a_per_registry_map_in_x_registry_auth(env):
    """podman sends every registry's credentials as a map; the right one is used."""
    reg = env.registry
    r = env.docker("tag", "base:1", f"{reg.host}/login/map:1")
    assert r.returncode == 0
    auth = {"username": reg.username, "password": reg.password}
    r = env.docker("push", f"{reg.host}/login/map:1")  # logged in by the first test, or:
    if r.returncode != 0:
        pytest.fail(r.stderr.decode())
    query = urllib.parse.urlencode({"reference": f"{reg.host}/login/map:1", "tlsVerify": "false"})
    status, body = env.raw("POST", f"/v4.0.0/libpod/images/pull?{query}",
                           {"X-Registry-Auth": _header({"other.example:5000": {"username": "x",
                                                        "password": "y"}, reg.host: auth})})  # fmt: skip
    assert status == 200 and b'"error"' not in body, body
    status, body = env.raw("POST", f"/v4.0.0/libpod/images/pull?{query}",
                           {"X-Registry-Auth": _header({reg.host: {"username": reg.username,
                                                        "password": "wrong"}})})  # fmt: skip
    assert b"unauthorized" in body.lower(), body


def test_identity_tokens_log_in_push_and_pull(env, registry_token):
    """An AuthConfig holding only an ``identitytoken`` (an OAuth2 refresh token: what
    ``docker login`` keeps for registries that issue one, and what docker-py sends from
    ``auths[...]["identitytoken"]``): ``POST /auth`` checks it, and pushes and pulls trade
    it at the token server (a ``grant_type=refresh_token`` POST), as dockerd does; they
    used to go out anonymous and be refused."""
    reg, ts = registry_token, registry_token.token_server
    ts.refresh_tokens["refresh-api-login"] = reg.username
    token_auth = {"identitytoken": "refresh-api-login", "serveraddress": reg.host}

    def auth(obj: dict) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        return env.raw("POST", "/v1.41/auth", headers, json.dumps(obj).encode())

    status, body = auth(token_auth)
    assert status == 200 and json.loads(body)["Status"] == "Login Succeeded", body
    status, body = auth(dict(token_auth, identitytoken="refresh-not-issued"))
    assert status == 401 and b"unauthorized" in body.lower(), body
    assert b"refresh-not-issued" not in body
    c = env.dockerpy()
    try:
        before = len(ts.requests)
        _push_and_pull_back(c, f"{reg.host}/login/token", token_auth)
    finally:
        c.close()
    grants = [form for method, form in ts.requests[before:] if method == "POST"]
    assert grants and {f["refresh_token"][0] for f in grants} == {"refresh-api-login"}
    assert env.server_auth_files() == []


def test_auth_answers_with_the_identity_token_the_token_server_issued(env, registry_token):
    """dockerd's ``POST /auth`` asks the token server for a refresh token (``offline_token``)
    and answers with it as ``IdentityToken``, which ``docker login`` keeps instead of the
    password; kiln answered "" always. A registry without a token server issues none."""
    reg, ts = registry_token, registry_token.token_server

    def auth(obj: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        status, body = env.raw("POST", "/v1.41/auth", headers, json.dumps(obj).encode())
        assert status == 200, body
        return json.loads(body)

    answer = auth({"username": reg.username, "password": reg.password, "serveraddress": reg.host})
    token = answer["IdentityToken"]
    assert answer["Status"] == "Login Succeeded"
    assert token and ts.refresh_tokens.get(token) == reg.username  # the one it issued
    again = auth({"identitytoken": token, "serveraddress": reg.host})["IdentityToken"]
    assert again and ts.refresh_tokens.get(again) == reg.username  # it works, and rotates
    basic = env.registry
    answer = auth({"username": basic.username, "password": basic.password,
                   "serveraddress": basic.host})  # fmt: skip
    assert answer == {"Status": "Login Succeeded", "IdentityToken": ""}
