"""``kiln login`` and ``kiln search`` wait between retries as the other registry commands
do: ``--retry``/``--retry-delay``, else ``$KILN_RETRY``/``$KILN_RETRY_DELAY``. In process:
the registry refuses every connection (no socket is opened) and the waits are recorded
instead of slept."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from click.testing import CliRunner

import kiln.registry.client as registry_client
from kiln.cli.main import cli
from registry_env import isolate_registry_env


@pytest.fixture
def waits(tmp_path, monkeypatch) -> list[float]:
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)
    for var in ("KILN_RETRY", "KILN_RETRY_DELAY"):
        monkeypatch.delenv(var, raising=False)
    seen: list[float] = []
    policy = registry_client.RetryPolicy

    def recorded(**kw):
        return dataclasses.replace(policy(**kw), sleep=seen.append)

    def refused(self, request):
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(registry_client, "RetryPolicy", recorded)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", refused)
    return seen


COMMANDS = {
    "login": ["login", "--tls-verify=false", "-u", "a", "-p", "b", "reg.invalid:5000"],
    "search": ["search", "--tls-verify=false", "reg.invalid:5000/x"],
}


@pytest.mark.parametrize("verb", COMMANDS)
def test_the_environment_s_retries_and_delay(verb, waits, monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_RETRY", "2")
    monkeypatch.setenv("KILN_RETRY_DELAY", "50ms")
    res = CliRunner().invoke(cli, ["--root", str(tmp_path / "root"), *COMMANDS[verb]])
    assert res.exit_code != 0
    assert waits == [0.05, 0.05], res.output  # 2 retries after the first attempt, no backoff


@pytest.mark.parametrize("verb", COMMANDS)
def test_the_flags_win_over_the_environment(verb, waits, monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_RETRY_DELAY", "50ms")
    args = [*COMMANDS[verb][:1], "--retry", "1", "--retry-delay", "10ms", *COMMANDS[verb][1:]]
    res = CliRunner().invoke(cli, ["--root", str(tmp_path / "root"), *args])
    assert res.exit_code != 0
    assert waits == [0.01], res.output
