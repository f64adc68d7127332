"""A ``user:password@`` a user gives in an image reference, an ADD URL or a remote
build context never appears in kiln's output, errors or logs (debug included), nor in
the API's answers (issue: hostile inputs, class 5). Nothing listens on the ports used:
each command fails, and its failure must not show the secret."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config

SECRET = "s3cret-Pa55"
KILN = [sys.executable, "-m", "kiln.cli.main"]


def kiln(tmp_path, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    flags = ["--debug"] if debug else []
    return subprocess.run(
        [*KILN, "--root", str(tmp_path / "root"), *flags, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def assert_no_secret(result: subprocess.CompletedProcess) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert SECRET not in text, text
    assert "alice:***@" in text or "***@" in text, text


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "ref",
    [f"alice:{SECRET}@127.0.0.1:9/team/app:1", f"https://alice:{SECRET}@127.0.0.1:9/team/app"],
)
def test_pull_of_a_reference_with_credentials(tmp_path, ref, debug):
    assert_no_secret(kiln(tmp_path, "pull", "--tls-verify=false", ref, debug=debug))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None, reason="needs root")
@pytest.mark.parametrize("debug", [False, True])
def test_build_add_url_with_credentials(tmp_path, debug):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        f"FROM scratch\nADD http://alice:{SECRET}@127.0.0.1:9/f /f\n"
    )
    assert_no_secret(kiln(tmp_path, "build", str(ctx), debug=debug))


@pytest.mark.parametrize("debug", [False, True])
def test_build_of_a_remote_context_with_credentials(tmp_path, debug):
    url = f"http://alice:{SECRET}@127.0.0.1:9/context.tar"
    assert_no_secret(kiln(tmp_path, "build", url, debug=debug))


@pytest.mark.parametrize(
    "value",
    [
        f"alice:{SECRET}@127.0.0.1:9/team/cache:1",
        f"type=registry,ref=https://alice:{SECRET}@127.0.0.1:9/team/cache",
    ],
)
def test_build_cache_from_with_credentials_warns_without_them(tmp_path, value):
    """A cache that cannot be used is a warning and the build goes on: the warning (on
    the terminal and in the build's record in the store) quotes the value, masked."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM scratch\nLABEL a=b\n")
    result = kiln(tmp_path, "build", "--cache-from", value, str(ctx))
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "not using this cache" in text and "alice:***@" in text, text
    assert SECRET not in text, text
    for path in (tmp_path / "root").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_api_answers_never_echo_credentials(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as client:
        answers = [
            client.post("/images/create", params={"fromImage": f"alice:{SECRET}@127.0.0.1:9/x"}),
            client.post(
                "/libpod/images/pull", params={"reference": f"alice:{SECRET}@127.0.0.1:9/x"}
            ),
            client.post("/build", params={"remote": f"http://alice:{SECRET}@127.0.0.1:9/c.tar"}),
        ]
    for answer in answers:
        assert SECRET not in answer.text, answer.text
