"""A bare ``kiln login REGISTRY`` checks the credentials already stored, as podman's does:
valid ones end the command ("Already logged in"), invalid ones are said to be invalid
and the usual prompt (here: no terminal, a clear error) follows. Nothing is rewritten."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from kiln_cli import kiln_runner, registry_free_environ

pytestmark = [
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
    pytest.mark.timeout(180),
]


def _kiln(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = registry_free_environ(tmp_path)
    return kiln_runner(env, timeout=60)(*args, check=False)


def _auth_file(tmp_path, server, password: str) -> str:
    path = tmp_path / "auth.json"
    secret = base64.b64encode(f"{server.username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {server.host: {"auth": secret}}}))
    return str(path)


def test_bare_login_with_valid_stored_credentials_is_already_logged_in(registry_basic, tmp_path):
    server = registry_basic
    path = _auth_file(tmp_path, server, server.password)
    before = (tmp_path / "auth.json").read_bytes()
    res = _kiln(tmp_path, "login", "--tls-verify=false", "--authfile", path, server.host)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"Authenticating with existing credentials for {server.host}",
        f"Existing credentials are valid. Already logged in to {server.host}",
    ]
    assert server.password not in res.stdout + res.stderr
    assert (tmp_path / "auth.json").read_bytes() == before


def test_bare_login_with_invalid_stored_credentials_says_so(registry_basic, tmp_path):
    server = registry_basic
    path = _auth_file(tmp_path, server, "stale-secret")
    before = (tmp_path / "auth.json").read_bytes()
    res = _kiln(tmp_path, "login", "--tls-verify=false", "--authfile", path, server.host)
    assert res.returncode == 125
    assert "Existing credentials are invalid" in res.stdout
    assert res.stderr.startswith("Error: no username given and no terminal to ask")
    assert "stale-secret" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "auth.json").read_bytes() == before
