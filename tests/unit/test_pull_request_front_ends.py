"""Every pull front end turns the same request into the same ``PullRequest``: ``kiln pull``
(click's parsing of its flags), the Docker and libpod pull routes (starlette's query and
auth headers, through the app) and varlink's ``PullImage`` (a JSON call through the
``io.podman`` service). The use case they hand it to is replaced by a recorder: what is
checked is what each front end asks for, parsed by its own code."""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.cli.main import cli
from kiln.ops import file_transfer
from kiln.ops.config import Config
from kiln.ops.options import PullRequest, RegistryOptions
from kiln.ops.registry import PullResult
from kiln.util.choices import PullPolicy

IMAGE_ID = "sha256:" + "a" * 64


@pytest.fixture
def asked(monkeypatch) -> list[PullRequest]:
    """The requests the front ends hand to ``kiln.ops.file_transfer.pull``."""
    seen: list[PullRequest] = []

    def pull(ctx: Any, request: PullRequest) -> PullResult:
        seen.append(request)
        ref = request.source.removeprefix("docker://")
        return PullResult(IMAGE_ID, "sha256:" + "b" * 64, [ref], ref, [IMAGE_ID])

    # the routes import it when first called, from its module: one patch reaches them all
    monkeypatch.setattr(file_transfer, "pull", pull)
    return seen


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))


def cli_request(asked: list[PullRequest], config: Config, *args: str) -> PullRequest:
    res = CliRunner().invoke(cli, ["--root", str(config.root), "pull", *args])
    assert res.exit_code == 0, res.output
    return asked.pop()


def api_request(
    asked: list[PullRequest], config: Config, path: str, auth: dict | None = None
) -> PullRequest:
    headers = {}
    if auth is not None:
        headers["X-Registry-Auth"] = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    with TestClient(create_app(config)) as client:
        r = client.post(path, headers=headers)
    assert r.status_code == 200, r.text
    return asked.pop()


def dockerd_reading(request: PullRequest) -> PullRequest:
    """``request`` with short names read as dockerd reads them (Docker Hub), as the Docker
    routes ask; the CLI, libpod and varlink keep registries.conf's rules."""
    options = dataclasses.replace(request.options, docker_short_names=True)
    return dataclasses.replace(request, options=options)


def varlink_request(asked: list[PullRequest], config: Config, **parameters: Any) -> PullRequest:
    pytest.importorskip("varlink")
    from kiln.api.varlink_params import checked_call
    from kiln.api.varlink_podman import make_service

    service = make_service(config)
    call = {"method": "io.podman.PullImage", "parameters": parameters}
    call = checked_call(service.interfaces["io.podman"], call)
    here, there = socket.socketpair()
    with here, there:
        replies = list(service.handle(json.dumps(call).encode(), _request=here))
    assert replies and b'"error"' not in replies[-1], replies
    return asked.pop()


def test_a_plain_pull_is_one_request_everywhere(asked, config):
    from_cli = cli_request(asked, config, "quay.io/x/y:1")
    assert api_request(asked, config, "/v4.3.1/libpod/images/pull?reference=quay.io/x/y:1") == (
        from_cli
    )
    # podman's varlink PullImage pulled only what the store lacked (util.PullImageMissing)
    assert varlink_request(asked, config, name="quay.io/x/y:1") == (
        cli_request(asked, config, "--policy", "missing", "quay.io/x/y:1")
    )
    # Docker's fromImage is always a registry reference
    assert api_request(asked, config, "/v1.41/images/create?fromImage=quay.io/x/y&tag=1") == (
        dockerd_reading(cli_request(asked, config, "docker://quay.io/x/y:1"))
    )
    assert from_cli == PullRequest("quay.io/x/y:1", PullPolicy.ALWAYS, None)


def test_policy_tags_quiet_and_registry_settings_agree(asked, config):
    from_cli = cli_request(
        asked, config,
        "-q", "--all-tags", "--policy", "missing", "--tls-verify=false", "--creds", "u:p",
        "quay.io/x/y",
    )  # fmt: skip
    from_libpod = api_request(
        asked,
        config,
        "/v4.3.1/libpod/images/pull?reference=quay.io/x/y&allTags=true&policy=IfMissing"
        "&quiet=true&tlsVerify=false",
        auth={"username": "u", "password": "p"},
    )
    assert from_libpod == from_cli
    assert from_cli.policy is PullPolicy.MISSING and from_cli.all_tags and from_cli.quiet
    assert from_cli.options == RegistryOptions(tls_verify=False, creds="u:p")
    assert varlink_request(
        asked, config, name="quay.io/x/y:1", creds={"username": "u", "password": "p"}
    ) == cli_request(asked, config, "--policy", "missing", "--creds", "u:p", "quay.io/x/y:1")


def test_docker_route_all_tags_and_loopback_registries(asked, config):
    # no tag anywhere: every tag, as dockerd; a loopback registry is plain HTTP, as dockerd
    every_tag = cli_request(
        asked, config, "--all-tags", "--tls-verify=false", "docker://127.0.0.1:5000/x/y"
    )
    assert api_request(
        asked, config, "/v1.41/images/create?fromImage=127.0.0.1:5000/x/y"
    ) == dockerd_reading(every_tag)
    with_creds = cli_request(asked, config, "--creds", "u:p", "docker://quay.io/x/y:2")
    assert api_request(
        asked, config, "/v1.41/images/create?fromImage=quay.io/x/y&tag=2",
        auth={"username": "u", "password": "p"},
    ) == dockerd_reading(with_creds)  # fmt: skip


def test_the_platform_words_parse_once(asked, config):
    by_arch = cli_request(asked, config, "--arch", "arm64", "--os", "linux", "quay.io/x/y:1")
    assert by_arch == cli_request(asked, config, "--platform", "linux/arm64", "quay.io/x/y:1")
    assert str(by_arch.platform).startswith("linux/arm64")
    res = CliRunner().invoke(
        cli,
        ["--root", str(config.root), "pull", "--platform", "linux/arm64", "--arch", "arm64", "x"],
    )
    assert res.exit_code != 0 and "--platform cannot be combined" in res.output
    assert not asked  # refused before any pull


def test_libpod_refuses_a_transport_the_cli_refuses_in_its_words(config):
    # it used to be read as a Docker Hub repository named "containers-storage"; the
    # transports the CLI reads, the API refuses too (tests/unit/test_api_server_paths.py)
    with TestClient(create_app(config)) as client:
        r = client.post("/v4.3.1/libpod/images/pull?reference=containers-storage:busybox")
    assert r.status_code == 400, r.text
    assert "kiln keeps its own store" in r.json()["message"]
