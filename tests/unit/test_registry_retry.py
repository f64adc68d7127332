"""Retry policy: what is retried, how long it waits, and what never is."""

from __future__ import annotations

import httpx
import pytest

from kiln.errors import KilnError, NotFound, Unavailable
from kiln.oci import Reference
from kiln.registry import RegistryClient, RegistryOptions
from kiln.registry.retry import RetryPolicy, retry_after_seconds
from registry_env import isolate_registry_env


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)


def _client(handler, waits: list[float], tries: int = 3) -> RegistryClient:
    client = RegistryClient(
        RegistryOptions(transport=httpx.MockTransport(handler), retries=tries, retry_delay=0.5)
    )
    client.retry = RetryPolicy(tries=tries, delay=0.5, sleep=waits.append)
    return client


def _ref() -> Reference:
    return Reference.parse("reg.example:5000/a/b:t")


def _manifest_ok(request: httpx.Request) -> httpx.Response | None:
    if request.url.path == "/v2/":
        return httpx.Response(200)
    return None


def test_backoff_doubles_and_succeeds_after_5xx() -> None:
    calls = []
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"name": "a/b", "tags": ["t"]})

    assert _client(handler, waits).list_tags(_ref()) == ["t"]
    assert len(calls) == 3
    assert waits == [0.5, 1.0]


def test_gives_up_after_three_tries_with_unavailable() -> None:
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        return httpx.Response(502, json={"errors": [{"code": "UNAVAILABLE", "message": "down"}]})

    with pytest.raises(Unavailable) as exc:
        _client(handler, waits).list_tags(_ref())
    assert "down" in str(exc.value) and "502" in str(exc.value)
    assert len(waits) == 2


def test_429_honours_retry_after() -> None:
    waits: list[float] = []
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200, json={"tags": []})

    assert _client(handler, waits).list_tags(_ref()) == []
    assert waits == [7.0]


def test_connection_errors_are_retried() -> None:
    waits: list[float] = []
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"tags": ["x"]})

    assert _client(handler, waits).list_tags(_ref()) == ["x"]
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize("status", [400, 403, 404, 405])
def test_other_4xx_are_never_retried(status: int) -> None:
    waits: list[float] = []
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        calls.append(1)
        return httpx.Response(
            status, json={"errors": [{"code": "NAME_UNKNOWN", "message": "nope"}]}
        )

    with pytest.raises(KilnError):
        _client(handler, waits).list_tags(_ref())
    assert calls == [1]
    assert waits == []


def test_not_found_wording() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if r := _manifest_ok(request):
            return r
        return httpx.Response(
            404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
        )

    with pytest.raises(NotFound) as exc:
        _client(handler, []).get_manifest(_ref())
    assert str(exc.value) == "reading manifest t in reg.example:5000/a/b: manifest unknown"


def test_retry_after_http_date() -> None:
    resp = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"})
    assert retry_after_seconds(resp, now=1445412480.0) == pytest.approx(10.0)
    assert retry_after_seconds(httpx.Response(429)) is None
    assert RetryPolicy(delay=2.0).wait_for(1) == 2.0
    assert RetryPolicy(delay=2.0).wait_for(3) == 8.0
    assert RetryPolicy(delay=1.5, backoff=False).wait_for(3) == 1.5  # podman's --retry-delay
