"""Registry authentication as an httpx auth flow (a generator of requests).

On a 401 the flow reads the challenge. Basic: resend with the credentials.
Bearer: fetch a token from the realm (anonymous, with Basic credentials, or an
OAuth2 refresh-token POST when an identity token is stored, a GET when the token
server answers that POST with 404 or 405), cache it per
(registry, scope) until it expires, and resend once. A second 401 raises
:class:`kiln.errors.Unauthorized`. Once a host's challenge is known, later
requests get their token before they are sent, so streamed bodies are sent once.
Credentials and tokens never reach messages, logs or reprs.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Generator

from kiln.errors import Unauthorized, Unavailable
from kiln.oci import strict_json
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.auth_challenge import Challenge, parse_headers, preferred
from kiln.registry.credentials import Credential
from kiln.registry.http_errors import describe_entries, error_entries, read_small
from kiln.util.lazy_dataclass import dataclass

log = logging.getLogger("kiln.registry")

CredentialLookup = Callable[[str, "str | None"], "Credential | None"]

_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")
DEFAULT_TOKEN_LIFETIME = 60
EXPIRY_MARGIN = 5
#: The most of a token server's answer read: containers/image's MaxAuthTokenBodySize.
MAX_TOKEN_BODY = 1 << 20


def _read_token_answer(resp: httpx.Response, host: str) -> bytes:
    """The body of ``resp`` (streamed), refusing one over MAX_TOKEN_BODY: a hostile
    token server's endless answer must not fill the memory."""
    body = bytearray()
    try:
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > MAX_TOKEN_BODY:
                raise Unavailable(
                    f"{host}: the registry's auth server sent a token answer over the "
                    f"{MAX_TOKEN_BODY}-byte limit"
                )
    finally:
        resp.close()
    # httpx reads each answer of an auth flow once it goes on: give it the bytes read
    resp._content = bytes(body)  # private: httpx's cache of a read body
    return resp._content


def request_scopes(request: httpx.Request) -> tuple[str | None, list[str]]:
    """The repository a registry request touches and the token scopes it needs."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return None, ["registry:catalog:*"]
    m = _REPO_PATH_RE.match(path)
    if not m:
        return None, []
    repo = m.group(1)
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    scopes = [f"repository:{repo}:{actions}"]
    source = request.url.params.get("from")
    if source and request.url.params.get("mount"):
        scopes.append(f"repository:{source}:pull")
    return repo, scopes


def merge_scopes(*groups: str | list[str]) -> str:
    """Space-separated, de-duplicated, actions of one resource merged, sorted."""
    actions: dict[str, set[str]] = {}
    for group in groups:
        items = group.split() if isinstance(group, str) else group
        for item in items:
            res, _, acts = item.rpartition(":")
            if not res:
                continue
            actions.setdefault(res, set()).update(a for a in acts.split(",") if a)
    return " ".join(f"{res}:{','.join(sorted(acts))}" for res, acts in sorted(actions.items()))


@dataclass
class _Token:
    value: str
    expires: float
    refresh_token: str = ""


class TokenCache:
    """Bearer tokens per (registry, scope), dropped when they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, host: str, scope: str) -> str | None:
        with self._lock:
            tok = self._tokens.get((host, scope))
            if tok is None or tok.expires <= self._clock():
                self._tokens.pop((host, scope), None)
                return None
            return tok.value

    def put(self, host: str, scope: str, value: str, lifetime: float) -> None:
        with self._lock:
            expires = self._clock() + max(lifetime - EXPIRY_MARGIN, 1)
            self._tokens[(host, scope)] = _Token(value, expires)

    def drop(self, host: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((host, scope), None)

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"


TRUSTED_REALMS_ENV = "KILN_TRUSTED_TOKEN_REALMS"


def realm_may_receive_credentials(registry: httpx.URL, realm: str) -> bool:
    """Whether a bearer challenge's ``realm`` may see the user's basic credentials.

    A registry names its token server in its 401 answer; a hostile or hijacked one
    could name any server to collect the password. Credentials go only to the
    registry's own host, a host under it, or a sibling under the same parent domain
    (``registry-1.docker.io`` -> ``auth.docker.io``), hosts in
    ``$KILN_TRUSTED_TOKEN_REALMS`` (comma-separated), and never over plain http when
    the registry itself is https.
    """
    try:
        url = httpx.URL(realm)
    except (httpx.InvalidURL, TypeError):
        return False
    if registry.scheme == "https" and url.scheme != "https":
        return False
    want, have = registry.host.lower(), url.host.lower()
    trusted = os.environ.get(TRUSTED_REALMS_ENV, "")
    if have in {h.strip().lower() for h in trusted.split(",") if h.strip()}:
        return True
    if have == want or have.endswith("." + want):
        return True
    labels = want.split(".")
    if want.replace(".", "").isdigit() or ":" in want or len(labels) < 3:
        return False  # an IP address or a two-label domain: its own host only
    parent = ".".join(labels[1:])
    return have == parent or have.endswith("." + parent)


def _host_of(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, TypeError):
        return "?"


def _basic_header(cred: Credential) -> str:
    raw = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _oauth_request(realm: str, service: str, scope: str, refresh_token: str) -> httpx.Request:
    """OAuth2's refresh-token grant (distribution's token spec, dockerd's and podman's)."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": "kiln",
        "access_type": "offline",
    }
    if service:
        form["service"] = service
    if scope:
        form["scope"] = scope
    return httpx.Request("POST", realm, data=form)


def _get_token_request(
    realm: str, service: str, scope: str, cred: Credential | None, offline: bool = False
) -> httpx.Request:
    """The token spec's ``GET realm?service=&scope=``, with Basic credentials if any;
    ``offline``: ask for a refresh token too (``offline_token``, as dockerd's login)."""
    params: list[tuple[str, str | int | float | bool | None]] = []
    if service:
        params.append(("service", service))
    params += [("scope", s) for s in scope.split()]
    if cred is not None and cred.username:
        params.append(("account", cred.username))
    if offline:
        params += [("offline_token", "true"), ("client_id", "kiln")]
    req = httpx.Request("GET", realm, params=params)
    if cred is not None:
        req.headers["Authorization"] = _basic_header(cred)
    return req


class RegistryAuth(httpx.Auth):
    """The auth flow; ``credentials(host, repository)`` finds credentials lazily."""

    def __init__(self, credentials: CredentialLookup, tokens: TokenCache | None = None):
        self._credentials = credentials
        self.tokens = tokens or TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._lock = threading.Lock()
        # hosts whose token requests ask for a refresh token -> the one issued ("": none yet)
        self._refresh: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RegistryAuth(hosts={sorted(self._challenges)})"

    # -- public helpers ----------------------------------------------------------
    def challenge_for(self, host: str) -> Challenge | None:
        return self._challenges.get(host)

    def remember(self, host: str, response: httpx.Response) -> Challenge | None:
        ch = preferred(parse_headers(response.headers.get_list("www-authenticate")))
        if ch is not None:
            with self._lock:
                self._challenges[host] = Challenge(
                    ch.scheme, {k: v for k, v in ch.params.items() if k in ("realm", "service")}
                )
        return ch

    def want_refresh_token(self, host: str) -> None:
        """Token requests for ``host`` ask for an OAuth2 refresh token (dockerd's login:
        ``POST /auth`` answers with it); :meth:`refresh_token_issued` gives it."""
        with self._lock:
            self._refresh[host] = ""

    def refresh_token_issued(self, host: str) -> str:
        """The refresh token ``host``'s token server issued since :meth:`want_refresh_token`
        ("" when none: a Basic registry, or a server that issues none); asks no more."""
        with self._lock:
            return self._refresh.pop(host, "")

    # -- the flow ----------------------------------------------------------------
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = request.url.netloc.decode("ascii")
        repo, scopes = request_scopes(request)
        known = self._challenges.get(host)
        if known is not None and "authorization" not in request.headers:
            yield from self._authorize(request, host, repo, known, merge_scopes(scopes))
        response = yield request
        if response.status_code != 401:
            return
        challenge = self.remember(host, response)
        if challenge is None:
            return  # nothing we can answer; the caller reports the 401
        cred = self._credentials(host, repo)
        if challenge.scheme == "basic" and cred is None:
            return
        scope = merge_scopes(challenge.scope, scopes)
        # httpx reads the whole 401 once the flow goes on: its body, bounded, first
        response._content = read_small(response)  # private: httpx's cache of a read body
        if challenge.scheme == "bearer":
            self.tokens.drop(host, scope)  # forget a token the registry just refused
        yield from self._authorize(request, host, repo, challenge, scope, force=True)
        response = yield request
        if response.status_code == 401:
            detail = (
                describe_entries(error_entries(read_small(response))) or "authentication required"
            )
            if not detail.startswith("unauthorized"):
                detail = f"unauthorized: {detail}"
            if cred is not None and challenge.scheme == "basic":
                detail = "unauthorized: invalid username/password"
            raise Unauthorized(f"{host}: {detail}")

    def _authorize(
        self,
        request: httpx.Request,
        host: str,
        repo: str | None,
        challenge: Challenge,
        scope: str,
        force: bool = False,
    ) -> Generator[httpx.Request, httpx.Response, None]:
        cred = self._credentials(host, repo)
        if challenge.scheme == "basic":
            if cred is not None:
                request.headers["Authorization"] = _basic_header(cred)
            return
        if challenge.scheme != "bearer":
            return
        token = None if force else self.tokens.get(host, scope)
        if token is None:
            if cred is not None and not realm_may_receive_credentials(request.url, challenge.realm):
                log.warning(
                    "%s: not sending credentials to the token server %s (another site, or "
                    "plain http for an https registry); asking for an anonymous token. Trust "
                    "it with %s=<host> if it is the registry's own.",
                    host,
                    _host_of(challenge.realm),
                    TRUSTED_REALMS_ENV,
                )
                cred = None
            token, lifetime = yield from self._fetch_token(host, challenge, scope, cred)
            self.tokens.put(host, scope, token, lifetime)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"

    def _fetch_token(
        self, host: str, challenge: Challenge, scope: str, cred: Credential | None
    ) -> Generator[httpx.Request, httpx.Response, tuple[str, float]]:
        realm = challenge.realm
        if not realm.startswith(("http://", "https://")):
            raise Unavailable(f"registry {host} sent a bearer challenge without a usable realm")
        service = challenge.service
        offline = host in self._refresh
        if cred is not None and cred.identity_token:
            resp = yield _oauth_request(realm, service, scope, cred.identity_token)
            body = _read_token_answer(resp, host)
            if resp.status_code in (404, 405):
                # the token spec: a server without OAuth2 answers the POST with 404; GET
                # works on every one (the token as the password, as containerd sends it)
                basic = Credential(cred.username, cred.password or cred.identity_token)
                resp = yield _get_token_request(realm, service, scope, basic, offline)
                body = _read_token_answer(resp, host)
        else:
            resp = yield _get_token_request(realm, service, scope, cred, offline)
            body = _read_token_answer(resp, host)
        if resp.status_code in (401, 403):
            what = "invalid username/password" if cred is not None else "authentication required"
            raise Unauthorized(f"{host}: unauthorized: {what}")
        if resp.status_code != 200:
            detail = describe_entries(error_entries(body)) or f"HTTP {resp.status_code}"
            raise Unavailable(
                f"{host}: getting a token from the registry's auth server failed: {detail}"
            )
        try:
            obj = strict_json.parse(body)
        except ValueError:
            raise Unavailable(
                f"{host}: the registry's auth server sent a token that is not JSON"
            ) from None
        if not isinstance(obj, dict):
            obj = {}
        token = obj.get("token") or obj.get("access_token") or ""
        if not isinstance(token, str) or not token:
            raise Unavailable(f"{host}: the registry's auth server sent no token")
        lifetime = obj.get("expires_in") if isinstance(obj.get("expires_in"), int) else None
        refresh = obj.get("refresh_token")
        if offline and cred is not None and isinstance(refresh, str) and refresh:
            with self._lock:
                self._refresh[host] = refresh
        return token, float(lifetime or DEFAULT_TOKEN_LIFETIME)
