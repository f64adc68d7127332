"""An ``--authfile`` that does not exist is refused before any registry is asked, as
podman and buildah refuse it: a mistyped path would otherwise mean no credentials, and
the registry's "authentication required" would hide the typo. ``login`` writes the file,
so there a new path is what the user asks for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from kiln_cli import kiln_runner, registry_free_environ

pytestmark = [
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
    pytest.mark.timeout(120),
]

# a port nothing listens on: a command that got past the check would fail differently
NOWHERE = "127.0.0.1:9/repo/image:1"


def _kiln(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = registry_free_environ(tmp_path)
    env["KILN_RETRY"] = "1"
    return kiln_runner(env, timeout=60)(*args, check=False)


@pytest.mark.parametrize(
    "args",
    [
        ["pull", NOWHERE],
        ["push", "busybox", NOWHERE],
        ["search", "127.0.0.1:9/repo"],
        ["manifest", "push", "ml:1", NOWHERE],
        ["logout", "127.0.0.1:9"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_missing_authfile_is_refused_naming_it(tmp_path, args):
    missing = str(tmp_path / "typo" / "auth.json")
    flags = ["--authfile", missing] + ([] if args[0] == "logout" else ["--tls-verify=false"])
    res = _kiln(tmp_path, *args, *flags)
    assert res.returncode == 125, res.stderr
    assert res.stderr == f"Error: --authfile {missing}: no such file (kiln login creates one)\n"
    assert not os.path.exists(missing)


def test_login_creates_the_authfile_it_is_given(registry_basic, tmp_path):
    server = registry_basic
    new = tmp_path / "new" / "auth.json"
    res = _kiln(tmp_path, "login", "--tls-verify=false", "--authfile", str(new),
                "-u", server.username, "-p", server.password, server.host)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert server.host in json.loads(new.read_text())["auths"]
    assert server.password not in res.stdout + res.stderr
