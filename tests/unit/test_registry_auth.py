"""The registry auth flow (Basic, Bearer, OAuth2 refresh tokens) against a fake registry."""

from __future__ import annotations

import base64
import json
import logging
import traceback
import urllib.parse

import httpx
import pytest

from kiln.errors import Unauthorized, Unavailable
from kiln.oci import Reference
from kiln.registry import Credential, RegistryClient, RegistryOptions
from kiln.registry.auth import TokenCache, merge_scopes, request_scopes
from registry_env import isolate_registry_env

SECRET = "Hunter2-very-secret-Pw"
REG = "reg.example:5000"
REALM = "https://auth.reg.example/token"  # under the registry host: trusted with credentials


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)


class FakeRegistry:
    """Bearer (or Basic) registry plus its token server, as one MockTransport handler."""

    def __init__(
        self,
        scheme: str = "bearer",
        anonymous: bool = False,
        token_status: int = 200,
        oauth_status: int = 200,
    ):
        self.scheme = scheme
        self.anonymous = anonymous
        self.token_status = token_status
        self.oauth_status = oauth_status  # not 200: a token server without OAuth2's POST
        self.token_requests: list[httpx.Request] = []
        self.seen_auth: list[str] = []
        self.issued = 0

    def _challenge(self, scope: str = "") -> httpx.Response:
        if self.scheme == "basic":
            header = 'Basic realm="fake"'
        else:
            header = f'Bearer realm="{REALM}",service="fake-svc"'
            if scope:
                header += f',scope="{scope}"'
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return httpx.Response(401, headers={"WWW-Authenticate": header}, json=body)

    def _basic_ok(self, value: str) -> bool:
        secrets = [SECRET] + ([f"refresh-{SECRET}"] if self.oauth_status != 200 else [])
        return value in [
            "Basic " + base64.b64encode(f"alice:{s}".encode()).decode() for s in secrets
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.reg.example":
            self.token_requests.append(request)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"details": "boom"})
            if request.method == "POST" and self.oauth_status != 200:
                return httpx.Response(self.oauth_status, text="404 page not found")
            if request.method == "POST":
                form = urllib.parse.parse_qs(request.content.decode())
                if form.get("refresh_token") != ["refresh-" + SECRET]:
                    return httpx.Response(401, json={"details": "bad grant"})
            else:
                auth = request.headers.get("authorization", "")
                if auth and not self._basic_ok(auth):
                    return httpx.Response(401, json={"details": "bad creds"})
                if not auth and not self.anonymous:
                    self.issued += 1
                    return httpx.Response(200, json={"token": "anon-token", "expires_in": 300})
            self.issued += 1
            return httpx.Response(200, json={"token": "good-token", "expires_in": 300})
        auth = request.headers.get("authorization", "")
        self.seen_auth.append(auth)
        if request.url.path == "/v2/":
            return self._challenge()
        repo, scopes = request_scopes(request)
        if self.scheme == "basic":
            ok = self._basic_ok(auth)
        else:
            ok = auth == "Bearer good-token" or (self.anonymous and auth == "Bearer anon-token")
        if not ok:
            return self._challenge(merge_scopes(scopes))
        return httpx.Response(200, json={"name": repo, "tags": ["t1"]})


def _client(fake, **kw) -> RegistryClient:
    return RegistryClient(RegistryOptions(transport=httpx.MockTransport(fake), retry_delay=0, **kw))


REF = Reference.parse(f"{REG}/team/app:t1")


def test_bearer_token_fetched_with_basic_creds_and_cached() -> None:
    fake = FakeRegistry()
    client = _client(fake, creds=f"alice:{SECRET}")
    assert client.list_tags(REF) == ["t1"]
    assert client.list_tags(REF) == ["t1"]
    assert fake.issued == 1
    (tok,) = fake.token_requests
    assert tok.url.params["service"] == "fake-svc"
    assert tok.url.params["scope"] == "repository:team/app:pull"
    assert tok.headers["authorization"].startswith("Basic ")


def test_anonymous_bearer_token() -> None:
    fake = FakeRegistry(anonymous=True)
    assert _client(fake).list_tags(REF) == ["t1"]
    assert "authorization" not in fake.token_requests[0].headers


def test_anonymous_refused_says_authentication_required() -> None:
    fake = FakeRegistry(anonymous=False)
    with pytest.raises(Unauthorized) as exc:
        _client(fake).list_tags(REF)
    assert "unauthorized: authentication required" in str(exc.value)


def test_identity_token_uses_oauth2_post(tmp_path) -> None:
    authfile = tmp_path / "auth.json"
    authfile.write_text(f'{{"auths": {{"{REG}": {{"identitytoken": "refresh-{SECRET}"}}}}}}')
    fake = FakeRegistry()
    assert _client(fake, authfile=str(authfile)).list_tags(REF) == ["t1"]
    (tok,) = fake.token_requests
    assert tok.method == "POST"
    form = urllib.parse.parse_qs(tok.content.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["scope"] == ["repository:team/app:pull"]


@pytest.mark.parametrize("status", [404, 405])
def test_identity_token_falls_back_to_get_where_the_oauth2_post_is_missing(
    status, tmp_path
) -> None:
    """The token spec: a token server without OAuth2 answers the POST with 404; the GET
    that every one serves then carries the token as the password (containerd's way)."""
    authfile = tmp_path / "auth.json"
    entry = {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": f"refresh-{SECRET}"}
    authfile.write_text(json.dumps({"auths": {REG: entry}}))
    fake = FakeRegistry(oauth_status=status)
    assert _client(fake, authfile=str(authfile)).list_tags(REF) == ["t1"]
    post, get = fake.token_requests
    assert (post.method, get.method) == ("POST", "GET")
    assert get.url.params["account"] == "alice"
    assert get.url.params["scope"] == "repository:team/app:pull"


def test_basic_registry_sends_credentials_after_challenge() -> None:
    fake = FakeRegistry(scheme="basic")
    client = _client(fake, creds=f"alice:{SECRET}")
    assert client.list_tags(REF) == ["t1"]
    assert client.list_tags(REF) == ["t1"]
    # after the /v2/ ping the host is known to want Basic: no more 401 round trips
    assert fake.seen_auth[0] == ""
    assert all(a.startswith("Basic ") for a in fake.seen_auth[1:])


def test_basic_without_credentials_is_authentication_required() -> None:
    with pytest.raises(Unauthorized) as exc:
        _client(FakeRegistry(scheme="basic")).list_tags(REF)
    assert "authentication required" in str(exc.value)


def test_mount_scope_includes_source_repository() -> None:
    req = httpx.Request(
        "POST", f"https://{REG}/v2/team/app/blobs/uploads/?mount=sha256:aa&from=other/repo"
    )
    repo, scopes = request_scopes(req)
    assert repo == "team/app"
    assert scopes == ["repository:team/app:pull,push", "repository:other/repo:pull"]
    assert merge_scopes("repository:a:pull", ["repository:a:push", "repository:b:pull"]) == (
        "repository:a:pull,push repository:b:pull"
    )


def test_token_cache_expiry() -> None:
    now = [100.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("h", "s", "tok", 60)
    assert cache.get("h", "s") == "tok"
    assert cache.get("h", "other") is None
    now[0] += 56
    assert cache.get("h", "s") is None


REFUSED = (Unauthorized, "unauthorized: invalid username/password")


@pytest.mark.parametrize(
    "fake,creds,error",
    [
        (FakeRegistry(scheme="basic"), "alice:wrong-" + SECRET, REFUSED),
        (FakeRegistry(), "alice:wrong-" + SECRET, REFUSED),
        (FakeRegistry(token_status=500), f"alice:{SECRET}", (Unavailable, "auth server failed")),
        (FakeRegistry(token_status=403), f"alice:{SECRET}", REFUSED),
    ],
)
def test_secrets_never_appear_in_errors_reprs_or_logs(fake, creds, error, caplog) -> None:
    """Each case fails for its own reason (the refusal, the token server's error), and no
    form of the secret is in the error, its traceback or the log."""
    caplog.set_level(logging.DEBUG)
    client = _client(fake, creds=creds, retries=2)
    kind, words = error
    with pytest.raises(kind, match=words) as exc:
        client.list_tags(REF)
    text = "".join(traceback.format_exception(exc.value))
    for secret in (SECRET, base64.b64encode(creds.encode()).decode()):
        assert secret not in str(exc.value)
        assert secret not in text
        assert secret not in caplog.text
        assert secret not in repr(client)
        assert secret not in repr(client.options)


def test_credential_repr_hides_secret() -> None:
    cred = Credential("alice", SECRET, "tok-" + SECRET)
    assert SECRET not in repr(cred) and SECRET not in str(cred)
    assert "alice" in repr(cred)
