"""One registry host: its scheme (found by pinging ``/v2/``), TLS, auth and retries.

HTTPS is tried first. Only a host that is not verified (``--tls-verify=false``
or ``insecure = true`` in registries.conf) falls back to plain HTTP, as podman does.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping

from kiln.errors import Unauthorized, Unavailable
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.auth import RegistryAuth
from kiln.registry.header_deadline import bound_header_reads, headers_within, overall_deadline
from kiln.registry.http_errors import error_for, read_small
from kiln.registry.retry import RetryableStatus, RetryPolicy, call_with_retries, is_retryable_status
from kiln.registry.tls import TLSSettings
from kiln.util.pace import Pace

log = logging.getLogger("kiln.registry")

#: A request body: bytes, or pieces streamed as they are produced.
Body = bytes | Iterable[bytes]

#: Redirects one request follows, as Go's HTTP client (containers/image, dockerd) does.
MAX_REDIRECTS = 10

#: The most of an answer read that is not a blob or a manifest (a tag list, an upload's).
MAX_ANSWER = 64 << 20

#: Docker Hub's API lives on another host than its name.
API_HOSTS = {"docker.io": "registry-1.docker.io"}


def api_host(domain: str) -> str:
    return API_HOSTS.get(domain, domain)


def describe_transport_error(exc: BaseException, url: str) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return (
            f'Get "{url}": tls: failed to verify certificate: {reason or "unknown authority"}; '
            "add the registry's CA with --cert-dir (a directory of *.crt files) "
            "or use --tls-verify=false"
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "packet length" in text:
        return (
            f'Get "{url}": http: server gave HTTP response to HTTPS client; '
            "use --tls-verify=false or mark the registry insecure in registries.conf"
        )
    if isinstance(exc, httpx.ConnectError):
        return f'Get "{url}": connection refused or unreachable ({text or type(exc).__name__})'
    if isinstance(exc, httpx.TimeoutException):
        if "no complete response headers" in text:  # header_deadline's own
            return f'Get "{url}": {text.split(": ", 1)[-1]}; the registry is too slow or stalled'
        if "for all attempts" in text:  # the request's overall deadline (header_deadline)
            return f'Get "{url}": timed out; {text.rsplit("; ", 1)[-1].split(": ", 1)[-1]}'
        return f'Get "{url}": timed out'
    return f'Get "{url}": {type(exc).__name__}: {text}'


_TLS_MARKERS = ("SSL", "CERTIFICATE", "record layer", "packet length", "TLS")


def is_tls_failure(exc: BaseException) -> bool:
    """A handshake failure (wrong protocol, untrusted certificate): retrying cannot help."""
    text = str(exc)
    return any(marker in text for marker in _TLS_MARKERS)


class _TLSFailure(Exception):
    def __init__(self, error: httpx.ConnectError):
        super().__init__(str(error))
        self.error = error


#: A read of content named by its digest, whose bytes are verified against it.
_CONTENT_BY_DIGEST = re.compile(
    r"/(blobs|manifests)/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"
)


class _DowngradeRedirect(Exception):
    """An https answer redirected to plain http (the target's origin)."""


class _PingFailed(Exception):
    """Every scheme failed for good, or the retries ended: ``_ping`` says which way."""


class HostConnection:
    def __init__(
        self,
        domain: str,
        tls: TLSSettings,
        auth: RegistryAuth,
        retry: RetryPolicy,
        timeout: float = 60.0,
        user_agent: str = "kiln",
        transport: httpx.BaseTransport | None = None,
    ):
        self.domain = domain
        self.host = api_host(domain)
        self.tls = tls
        self.auth = auth
        self.retry = retry
        self.http = httpx.Client(
            verify=tls.ssl_context(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            follow_redirects=True,  # blobs live on storage hosts; httpx drops the
            max_redirects=MAX_REDIRECTS,  # Authorization for another origin
            headers={"User-Agent": user_agent},
            transport=transport,
            event_hooks={"response": [self._refuse_downgrade]},
        )
        self.timeout = timeout
        bound_header_reads(self.http)  # headers dripped byte by byte: see header_deadline
        self._base: str | None = None
        self._unreachable = ""  # why the ping failed: every later request fails the same
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HostConnection({self.domain!r}, base={self._base!r})"

    def close(self) -> None:
        self.http.close()

    # -- scheme detection ----------------------------------------------------------
    def base_url(self) -> str:
        """The registry's base URL, found by one ping per connection (one operation's): a
        ping that failed after its retries is not run again by the requests waiting on it
        (a push's parallel blobs would each run the whole sequence of retries again)."""
        with self._lock:
            if self._base is None:
                if self._unreachable:
                    raise Unavailable(self._unreachable)
                try:
                    with overall_deadline(self.retry.deadline, f"pinging {self.domain}"):
                        self._base = self._ping()
                except Unavailable as exc:
                    self._unreachable = str(exc)
                    raise
            return self._base

    def _ping_scheme(self, scheme: str) -> httpx.Response:
        """One GET of ``/v2/`` over ``scheme``; a TLS handshake failure is _TLSFailure."""
        try:
            with headers_within(self.timeout, f"pinging {self.domain}"):
                req = self.http.build_request("GET", f"{scheme}://{self.host}/v2/")
                resp = self.http.send(req, stream=True)
                read_small(resp)  # the body says nothing: a bounded part, never all of it
                return resp
        except _DowngradeRedirect as exc:
            raise Unavailable(f"pinging container registry {self.domain}: redirected from "
                              f"https to plain http ({exc}); not followed") from None  # fmt: skip
        except httpx.ConnectError as exc:
            if is_tls_failure(exc):
                raise _TLSFailure(exc) from None  # not transient: no retries
            raise

    def _ping(self) -> str:
        """The base URL, from one sequence of attempts (``RetryPolicy``, inside the one
        deadline ``base_url`` opens): each attempt tries HTTPS, then plain HTTP where it is
        allowed, so an insecure registry that is down costs the retries once, not per scheme.
        A scheme that answered for good (a TLS failure, a status no retry changes) is not
        asked again; the error names the first scheme's failure."""
        schemes = ["https", "http"] if self.tls.allow_http else ["https"]
        errors: dict[str, str] = {}  # scheme -> its last failure, https first
        found: list[str] = []
        first_transient: list[str] = []  # the scheme whose error a last retry ends on

        def attempt() -> httpx.Response:
            transient: BaseException | None = None
            first_transient.clear()
            for scheme in list(schemes):
                url = f"{scheme}://{self.host}/v2/"
                try:
                    resp = self._ping_scheme(scheme)
                except (httpx.TransportError, _TLSFailure) as exc:
                    err = exc.error if isinstance(exc, _TLSFailure) else exc
                    errors[scheme] = describe_transport_error(err, url)
                    log.debug("pinging %s over %s failed: %s", self.domain, scheme,
                              type(err).__name__)  # fmt: skip
                    if isinstance(exc, _TLSFailure):
                        schemes.remove(scheme)
                    elif transient is None:
                        transient = exc
                        first_transient.append(scheme)
                    continue
                if resp.status_code in (200, 401, 403, 404):
                    found.append(scheme)
                    return resp
                errors[scheme] = f'Get "{url}": HTTP status {resp.status_code}'
                if not is_retryable_status(resp.status_code):
                    schemes.remove(scheme)
                elif transient is None:
                    transient = RetryableStatus(resp)
                    first_transient.append(scheme)
            if transient is not None:
                raise transient
            raise _PingFailed()

        def give_up(exc: BaseException) -> httpx.Response:
            if isinstance(exc, httpx.TransportError) and first_transient:
                scheme = first_transient[0]  # its error, now saying the deadline ended it
                errors[scheme] = describe_transport_error(exc, f"{scheme}://{self.host}/v2/")
            raise _PingFailed() from None

        try:
            resp = call_with_retries(self.retry, f"pinging {self.domain}", attempt, give_up)
        except _PingFailed:
            first = next(iter(errors.values()), "no answer")
            raise Unavailable(f"pinging container registry {self.domain}: {first}") from None
        if resp.status_code == 401:
            self.auth.remember(self.host, resp)
        return f"{found[0]}://{self.host}"

    def _refuse_downgrade(self, response: httpx.Response) -> None:
        """A redirect from https to plain http is followed only by a read of content named
        by its digest (a blob, a manifest by digest: what arrives is verified against it,
        and storage behind an https registry may be plain http, which Go's client, thus
        skopeo and podman, follow). Anything else (a manifest by tag, an upload, a token)
        is not: an eavesdropper on the http leg would read, and could change, it. A
        registry that may be plain http (--tls-verify=false, insecure) is not checked."""
        if not response.has_redirect_location or self.tls.allow_http:
            return
        request = response.request
        target = request.url.join(response.headers["location"])
        if request.url.scheme != "https" or target.scheme != "http":
            return
        if request.method in ("GET", "HEAD") and _CONTENT_BY_DIGEST.search(request.url.path):
            return
        raise _DowngradeRedirect(f"{target.scheme}://{target.netloc.decode('ascii')}")

    # -- requests ----------------------------------------------------------------------
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url() + path

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        ok: tuple[int, ...] = (200,),
        allow: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
        content: Body | None = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
        retry: bool = True,
        make_content: Callable[[], Body] | None = None,
    ) -> httpx.Response:
        """Send with auth and retries; statuses outside ``ok``+``allow`` become kiln errors.

        With ``stream`` the caller must close the response. ``make_content`` builds a
        fresh body for each attempt (streamed uploads).
        """
        with overall_deadline(self.retry.deadline, what):  # the ping that finds url included
            return self._request(method, path, what, ok, allow, headers, content, params,
                                 stream, retry, make_content)  # fmt: skip

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        ok: tuple[int, ...],
        allow: tuple[int, ...],
        headers: dict[str, str] | None,
        content: Body | None,
        params: Mapping[str, str] | None,
        stream: bool,
        retry: bool,
        make_content: Callable[[], Body] | None,
    ) -> httpx.Response:
        url = self.url(path)
        policy = self.retry if retry else RetryPolicy(tries=1, sleep=self.retry.sleep)

        def attempt() -> httpx.Response:
            body = make_content() if make_content is not None else content
            req = self.http.build_request(method, url, headers=headers, content=body, params=params)
            try:
                with headers_within(self.timeout, what):
                    resp = self.http.send(req, auth=self.auth, stream=True)
            except Unauthorized as exc:
                raise Unauthorized(f"{what}: {exc.message.split(': ', 1)[-1]}") from None
            except httpx.TooManyRedirects:
                raise Unavailable(
                    f"{what}: stopped after {MAX_REDIRECTS} redirects (the registry "
                    "redirects in a loop)"
                ) from None
            except _DowngradeRedirect as exc:
                raise Unavailable(
                    f"{what}: the registry redirected from https to plain http ({exc}); "
                    "not followed"
                ) from None
            except httpx.StreamConsumed:  # a 307 or a 401 after a streamed body went out
                raise Unavailable(
                    f"{what}: the registry redirected the upload or asked for credentials "
                    "after its body was sent; a streamed body is not sent twice"
                ) from None
            if is_retryable_status(resp.status_code):
                # its error body, bounded: a 503 whose body never ends must not hold us
                raise RetryableStatus(resp, read_small(resp))
            return resp

        def give_up(exc: BaseException) -> httpx.Response:
            if isinstance(exc, RetryableStatus):
                raise error_for(exc.response, what, exc.body)
            raise Unavailable(f"{what}: {describe_transport_error(exc, url).split(': ', 1)[-1]}")

        resp = call_with_retries(policy, what, attempt, give_up)
        if resp.status_code in ok or resp.status_code in allow:
            if not stream:
                self._read_small_answer(resp, what)
            return resp
        raise error_for(resp, what)

    def _read_small_answer(self, resp: httpx.Response, what: str) -> None:
        """Read an answer that is not a blob or a manifest (a HEAD's, an upload's, a tag
        list) within the timeout and MAX_ANSWER bytes: a body that never ends, or one of
        gigabytes, must neither hold the operation nor fill the memory."""
        pace = Pace(what, deadline=self.timeout)
        body = bytearray()
        try:
            for chunk in resp.iter_bytes():
                body += chunk
                pace.check(len(body))
                if len(body) > MAX_ANSWER:
                    raise Unavailable(f"{what}: the registry's answer is over the "
                                      f"{MAX_ANSWER}-byte limit")  # fmt: skip
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise Unavailable(f"{what}: the connection broke ({type(exc).__name__})") from None
        finally:
            resp.close()
        resp._content = bytes(body)  # private: httpx's cache of a read body (resp.content)
