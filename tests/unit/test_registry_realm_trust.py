"""A registry's bearer challenge names the server that gets the user's credentials:
only the registry's own site may, never over a TLS downgrade (issue: hostile inputs,
class 5)."""

from __future__ import annotations

import base64

import httpx
import pytest

from kiln.errors import Unauthorized
from kiln.oci import Reference
from kiln.registry import RegistryClient, RegistryOptions
from kiln.registry.auth import TRUSTED_REALMS_ENV, realm_may_receive_credentials
from registry_env import isolate_registry_env

SECRET = "Hunter2-very-secret-Pw"


@pytest.mark.parametrize(
    "registry, realm, ok",
    [
        ("https://reg.example.com", "https://reg.example.com/token", True),
        ("https://reg.example.com:5000", "https://reg.example.com:5001/token", True),
        ("https://registry-1.docker.io", "https://auth.docker.io/token", True),
        ("https://reg.example.com", "https://auth.reg.example.com/token", True),
        ("https://reg.example.com", "https://evil.example.net/token", False),
        ("https://reg.example.com", "http://reg.example.com/token", False),  # TLS downgrade
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", True),
        ("http://127.0.0.1:5000", "http://127.0.0.2/token", False),
        ("https://example.com", "https://attacker.com/token", False),  # no shared parent
        ("https://example.com", "https://other.com/token", False),
        ("https://reg.example.com", "not a url", False),
        ("https://reg.example.com", "https://reg.example.com.evil.net/token", False),
    ],
)
def test_who_may_receive_credentials(registry, realm, ok):
    assert realm_may_receive_credentials(httpx.URL(registry), realm) is ok


def test_trusted_realms_are_named_explicitly(monkeypatch):
    monkeypatch.setenv(TRUSTED_REALMS_ENV, "sso.corp.example, other.example")
    assert realm_may_receive_credentials(
        httpx.URL("https://reg.example.com"), "https://sso.corp.example/jwt"
    )
    assert not realm_may_receive_credentials(
        httpx.URL("https://reg.example.com"), "http://sso.corp.example/jwt"
    )


def test_a_foreign_realm_never_sees_the_password(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)
    seen_by_evil: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.example.net":
            seen_by_evil.append(request)
            return httpx.Response(200, json={"token": "anon"})
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="https://evil.example.net/t",service="s"'},
            json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
        )

    options = RegistryOptions(
        transport=httpx.MockTransport(handler), retry_delay=0, creds=f"alice:{SECRET}"
    )
    with RegistryClient(options) as client, pytest.raises(Unauthorized):
        client.get_manifest(Reference.parse("reg.example.com/team/app:1"))
    assert seen_by_evil, "the token server was asked (anonymously)"
    basic = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    for request in seen_by_evil:
        assert basic not in request.headers.get("authorization", "")
        assert "alice" not in str(request.url) and SECRET not in str(request.url)
