"""RegistryClient: manifests, blobs, uploads, tags, catalog and search on registries.

One client serves many registries; it keeps one :class:`HostConnection` (TLS,
scheme, auth, retries) per host. Pulls try ``[[registry.mirror]]`` entries
first; a registry ``blocked`` in registries.conf is refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from kiln.errors import DigestMismatch, InvalidArgument, NotFound, Unauthorized, Unavailable
from kiln.oci import media_types as mt
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest
from kiln.oci.manifest import sniff_media_type
from kiln.oci.reference import DEFAULT_DOMAIN, Reference, is_loopback_domain, is_short_name
from kiln.oci.schema1 import payload_digest
from kiln.registry import credentials, registries_conf
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.auth import RegistryAuth, TokenCache
from kiln.registry.blob_reader import BlobReader
from kiln.registry.connection import HostConnection
from kiln.registry.credentials import Credential
from kiln.registry.http_errors import ServerUnsupported
from kiln.registry.options import RegistryOptions
from kiln.registry.retry import RetryPolicy
from kiln.registry.tls import tls_settings
from kiln.registry.uploads import push_blob as _push_blob
from kiln.util.lazy_dataclass import dataclass
from kiln.util.pace import Pace

log = logging.getLogger("kiln.registry")

ACCEPT_ALL_MANIFESTS = mt.ACCEPT_ALL_MANIFESTS

T = TypeVar("T")


@dataclass(frozen=True)
class SearchResult:
    index: str
    name: str  # "registry/repo"
    description: str = ""
    stars: int = 0
    official: bool = False
    automated: bool = False


def _manifest_digest(raw: bytes, media_type: str, algorithm: str = "sha256") -> Digest:
    if media_type == mt.DOCKER_SCHEMA1_SIGNED:
        return payload_digest(raw, algorithm)
    return Digest(algorithm, Digest.of_bytes(raw, algorithm).hex)


class RegistryClient:
    def __init__(self, options: RegistryOptions | None = None):
        self.options = options or RegistryOptions()
        self.conf = registries_conf.load(self.options.registries_conf)
        opts = self.options
        self.retry = RetryPolicy(
            tries=opts.tries,
            delay=opts.first_delay,
            backoff=opts.retry_backoff,
            deadline=opts.deadline,
        )
        self._tokens = TokenCache()
        self._auth = RegistryAuth(self._credentials, self._tokens)
        self._conns: dict[tuple[str, bool], HostConnection] = {}
        self._sources: dict[str, Reference] = {}
        self._lock = threading.Lock()
        self._creds_override: dict[str, Credential] = {}

    def __repr__(self) -> str:
        return f"RegistryClient({self.options!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # -- plumbing ----------------------------------------------------------------------
    def _credentials(self, host: str, repository: str | None) -> Credential | None:
        domain = next((c.domain for c in self._conns.values() if c.host == host), None)
        if domain is None:
            # another host than a registry of this operation's (an upload Location, a
            # storage host that challenges): only what the auth files keep for that host,
            # never --creds, which are for the registry named
            return credentials.lookup(host, repository, authfile=self.options.authfile)
        if domain in self._creds_override:
            return self._creds_override[domain]
        return credentials.lookup(
            domain,
            repository,
            creds=self.options.creds,
            authfile=self.options.authfile,
            auths=self.options.auths,
        )

    def connection(self, domain: str, insecure: bool | None = None) -> HostConnection:
        if insecure is None:
            insecure = self.conf.is_insecure(domain)
        if self.options.insecure_loopback and is_loopback_domain(domain):
            insecure = True
        key = (domain, insecure)
        with self._lock:
            conn = self._conns.get(key)
            if conn is None:
                tls = tls_settings(domain, self.options.tls_verify, self.options.cert_dir, insecure)
                conn = HostConnection(
                    domain,
                    tls,
                    self._auth,
                    self.retry,
                    self.options.timeout,
                    self.options.user_agent,
                    transport=self.options.transport,
                )
                self._conns[key] = conn
            return conn

    def _pull_refs(self, ref: Reference) -> list[tuple[Reference, bool]]:
        remembered = self._sources.get(ref.name)
        sources = [(s.ref, s.insecure) for s in self.conf.pull_sources(ref)]
        if remembered is not None:
            sources.sort(key=lambda s: s[0].name != remembered.name)
        return sources

    def _try_sources(self, ref: Reference, op: Callable[[HostConnection, Reference], T]) -> T:
        sources = self._pull_refs(ref)
        last: Exception | None = None
        for i, (src, insecure) in enumerate(sources):
            try:
                result = op(self.connection(src.domain, insecure), src)
            except (NotFound, Unavailable, ServerUnsupported) as exc:
                if i == len(sources) - 1:
                    raise
                log.info("%s: %s; trying the next source", src.name, exc)
                last = exc
                continue
            self._sources[ref.name] = src
            return result
        raise last or NotFound(f"no source for {ref}")

    def _push_conn(self, ref: Reference) -> tuple[HostConnection, Reference]:
        target = self.conf.push_target(ref)
        return self.connection(target.ref.domain, target.insecure), target.ref

    # -- manifests ---------------------------------------------------------------------
    def get_manifest(
        self, ref: Reference, accept: tuple[str, ...] = ACCEPT_ALL_MANIFESTS
    ) -> tuple[bytes, str, Digest]:
        """The manifest bytes, media type and digest; the digest is verified."""
        return self._try_sources(ref, lambda conn, src: self._get_manifest(conn, src, accept))

    def _get_manifest(
        self, conn: HostConnection, ref: Reference, accept: tuple[str, ...]
    ) -> tuple[bytes, str, Digest]:
        target = ref.digest or ref.tag or "latest"
        what = f"reading manifest {target} in {ref.name}"
        resp = conn.request(
            "GET",
            f"/v2/{ref.path}/manifests/{target}",
            what,
            headers={"Accept": ", ".join(accept)},
            stream=True,
        )
        try:
            raw = self._read_capped(resp, what)
        finally:
            resp.close()
        declared = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        media_type = sniff_media_type(raw, declared)
        expected = ref.digest or resp.headers.get("docker-content-digest", "")
        algorithm = Digest.parse(expected).algorithm if expected else "sha256"
        actual = _manifest_digest(raw, media_type, algorithm)
        if expected and str(actual) != expected:
            raise DigestMismatch(
                f"{what}: manifest digest {actual} does not match {expected}", expected, str(actual)
            )
        return raw, media_type, actual

    def _read_capped(self, resp: httpx.Response, what: str) -> bytes:
        limit = self.options.max_manifest_size
        pace = Pace(what, deadline=self.options.timeout)
        out = bytearray()
        try:
            for chunk in resp.iter_bytes():
                out += chunk
                pace.check(len(out))
                if len(out) > limit:
                    raise InvalidArgument(f"{what}: manifest is over the {limit}-byte limit")
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise Unavailable(f"{what}: the connection broke ({type(exc).__name__})") from None
        return bytes(out)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The manifest's descriptor without its body; None if the tag/digest is unknown."""

        def op(conn: HostConnection, src: Reference) -> Descriptor | None:
            target = src.digest or src.tag or "latest"
            what = f"checking manifest {target} in {src.name}"
            resp = conn.request(
                "HEAD",
                f"/v2/{src.path}/manifests/{target}",
                what,
                headers={"Accept": ", ".join(ACCEPT_ALL_MANIFESTS)},
                allow=(404,),
            )
            if resp.status_code == 404:
                return None
            digest = resp.headers.get("docker-content-digest") or src.digest
            media_type = resp.headers.get("content-type", "").split(";", 1)[0].strip()
            size = resp.headers.get("content-length", "")
            if not digest or not size.isdigit():
                raw, media_type, d = self._get_manifest(conn, src, ACCEPT_ALL_MANIFESTS)
                return Descriptor(media_type, d, len(raw))
            return Descriptor(media_type, Digest.parse(digest), int(size))

        return self._try_sources(ref, op)

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest:
        """Store a manifest under ``ref``'s tag (or digest); returns its digest."""
        conn, dst = self._push_conn(ref)
        digest = _manifest_digest(raw, media_type)
        target = dst.tag or dst.digest or str(digest)
        what = f"writing manifest {target} to {dst.name}"
        resp = conn.request(
            "PUT",
            f"/v2/{dst.path}/manifests/{target}",
            what,
            ok=(200, 201, 202),
            headers={"Content-Type": media_type},
            content=raw,
        )
        got = resp.headers.get("docker-content-digest")
        if got and media_type not in mt.SCHEMA1 and got != str(digest):
            raise DigestMismatch(
                f"{what}: the registry stored {got}, not {digest}", str(digest), got
            )
        return digest

    def delete_manifest(self, ref: Reference) -> None:
        conn, dst = self._push_conn(ref)
        if not dst.digest:
            raise InvalidArgument(f"deleting {dst}: a manifest can only be deleted by digest")
        conn.request(
            "DELETE", f"/v2/{dst.path}/manifests/{dst.digest}", f"deleting {dst}", ok=(202, 200)
        )

    # -- blobs ----------------------------------------------------------------------------
    def open_blob(self, ref: Reference, digest: Digest, offset: int = 0) -> BlobReader:
        """A streaming reader of the blob from ``offset``; the caller verifies the digest."""

        def op(conn: HostConnection, src: Reference) -> BlobReader:
            what = f"reading blob {digest} from {src.name}"
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            resp = conn.request(
                "GET",
                f"/v2/{src.path}/blobs/{digest}",
                what,
                ok=(200, 206),
                headers=headers,
                stream=True,
            )
            skip = offset if (offset and resp.status_code == 200) else 0
            pace = Pace(what, min_rate=self.options.min_blob_rate, grace=self.options.rate_grace)
            return BlobReader(resp, what, offset=offset, skip=skip, pace=pace)

        return self._try_sources(ref, op)

    def has_blob(self, ref: Reference, digest: Digest) -> bool:
        conn, dst = self._push_conn(ref)
        what = f"checking blob {digest} in {dst.name}"
        resp = conn.request("HEAD", f"/v2/{dst.path}/blobs/{digest}", what, allow=(404,))
        return resp.status_code == 200

    def push_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        open_stream: Callable[[], BinaryIO],
        mount_from: Reference | None = None,
        *,
        check_exists: bool = True,
    ) -> str:
        """Upload a blob unless present; returns "exists", "mounted" or "uploaded".
        ``check_exists=False``: the caller has just seen it missing (no second ``HEAD``)."""
        conn, dst = self._push_conn(ref)
        source = None
        if mount_from is not None:
            src = self.conf.push_target(mount_from).ref
            if src.domain == dst.domain and src.path != dst.path:
                source = src.path
        return _push_blob(
            conn,
            dst.path,
            desc,
            open_stream,
            mount_from=source,
            chunk_size=self.options.chunk_size,
            monolithic_max=self.options.monolithic_max,
            check_exists=check_exists,
        )

    # -- listing ----------------------------------------------------------------------------
    def _paged(self, conn: HostConnection, path: str, key: str, what: str) -> list[str]:
        out: list[str] = []
        url: str | None = f"{path}?n={self.options.page_size}"
        seen = set()
        while url and url not in seen:
            seen.add(url)
            resp = conn.request("GET", url, what)
            try:
                obj: object = resp.json()
            except ValueError:
                raise InvalidArgument(
                    f"{what}: the registry answered with something other than JSON"
                ) from None
            items = (obj.get(key) if isinstance(obj, dict) else None) or []
            if not isinstance(items, list):
                raise InvalidArgument(f'{what}: the registry\'s "{key}" is not a list')
            out += [str(i) for i in items]
            nxt = resp.links.get("next", {}).get("url")
            url = str(resp.request.url.join(nxt)) if nxt else None
        return out

    def list_tags(self, ref: Reference) -> list[str]:
        def op(conn: HostConnection, src: Reference) -> list[str]:
            return self._paged(
                conn, f"/v2/{src.path}/tags/list", "tags", f"listing tags of {src.name}"
            )

        return self._try_sources(ref, op)

    def catalog(self, registry: str) -> list[str]:
        """Repository names in ``registry`` (``host[:port]``)."""
        conn = self.connection(registry)
        return self._paged(
            conn, "/v2/_catalog", "repositories", f"listing repositories of {registry}"
        )

    def search(self, term: str, limit: int = 25, registry: str | None = None) -> list[SearchResult]:
        """``/v1/search`` where served (Docker Hub), else the catalog filtered by ``term``."""
        if registry is None and "/" in term and not is_short_name(term):
            registry, term = term.split("/", 1)
        if registry:
            registries = [registry]
        elif self.options.docker_short_names:
            registries = [DEFAULT_DOMAIN]  # dockerd searches Docker Hub for a bare term
        else:
            registries = list(self.conf.search)
        out: list[SearchResult] = []
        for reg in registries:
            out += self._search_one(reg, term, limit)
        return out[:limit] if limit else out

    def _search_one(self, registry: str, term: str, limit: int) -> list[SearchResult]:
        index = "index.docker.io" if registry == "docker.io" else registry
        conn = self.connection(index)
        what = f"searching {registry} for {term}"
        resp = conn.request(
            "GET",
            "/v1/search",
            what,
            params={"q": term, "n": str(limit or 25)},
            allow=(400, 401, 403, 404, 405),
        )
        if resp.status_code == 200:
            try:
                obj = resp.json()
                return [
                    SearchResult(
                        registry,
                        f"{registry}/{r['name']}",
                        str(r.get("description") or ""),
                        int(r.get("star_count") or 0),
                        bool(r.get("is_official")),
                        bool(r.get("is_automated")),
                    )
                    for r in obj.get("results", [])
                ]
            except (ValueError, KeyError, TypeError, AttributeError):
                log.debug("%s: /v1/search answered with an unexpected body", registry)
        names = self.catalog(registry)
        return [
            SearchResult(registry, f"{registry}/{n}") for n in names if term.lower() in n.lower()
        ]

    # -- names and login ---------------------------------------------------------------------
    def resolve_short_name(self, name: str, enforce: bool = True) -> list[Reference]:
        """The references a pull of ``name`` tries: with ``docker_short_names``, the one
        dockerd would (``docker.io/library/alpine:latest``), else registries.conf's."""
        if self.options.docker_short_names:
            return [Reference.parse(name)]
        return self.conf.resolve_short_name(name, enforce)

    def check_login(
        self, registry: str, cred: Credential, *, want_refresh_token: bool = False
    ) -> str:
        """Verify ``cred`` against ``registry``'s ``/v2/``; raises Unauthorized if refused.
        ``want_refresh_token``: ask the token server for an OAuth2 refresh token, as
        dockerd's login does; returns the one it issued, else ""."""
        conn = self.connection(registry)
        self._creds_override[registry] = cred
        if want_refresh_token:
            self._auth.want_refresh_token(conn.host)
        try:
            resp = conn.request("GET", "/v2/", f"logging into {registry}", allow=(401, 404))
            if resp.status_code == 401:
                raise Unauthorized(f'logging into "{registry}": invalid username/password')
            if resp.status_code == 404:  # a web server, not a registry (podman refuses it too)
                raise NotFound(
                    f"logging into {registry}: GET /v2/ answered 404 Not Found: is it a registry?"
                )
        finally:
            issued = self._auth.refresh_token_issued(conn.host)  # asks no more either way
            self._creds_override.pop(registry, None)
        return issued
