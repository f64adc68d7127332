"""A registry that redirects (as Docker Hub, S3-backed registries and docker-registry's
redirect storage middleware do for blobs) or whose token server misbehaves: the pull still
works, no credential reaches another host, and a loop or a huge token answer ends with a
clear error in bounded time and memory. The registry and its "storage host" (another port:
another origin) are real HTTP servers on 127.0.0.1 written here."""

from __future__ import annotations

import base64
import http.server
import io
import json
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kiln.errors import KilnError, Unauthorized, Unavailable
from kiln.oci import Descriptor, Digest, Reference
from kiln.registry.client import RegistryClient, RegistryOptions
from registry_env import isolate_registry_env
from registry_servers import _write_ca_and_server

pytestmark = pytest.mark.timeout(120)

USER, PASSWORD = "alice", "s3cret-pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "tok-abc123"
BLOB = b"layer bytes " * 1000
BLOB_DIGEST = Digest.of_bytes(BLOB)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(BLOB_DIGEST),
            "size": len(BLOB),
        },
        "layers": [],
    }  # fmt: skip
).encode()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


Route = Callable[[http.server.BaseHTTPRequestHandler], bool]


class Server:
    """An HTTP server on 127.0.0.1 answering with ``route`` (which returns False for
    "not mine": a 404); every request's method, path and headers are kept in ``seen``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.route: Route = lambda h: False
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if not outer.route(self):
                    reply(self, 404, b"")

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def authorizations(self) -> list[str]:
        return [h.get("Authorization", "") for _m, _p, h in self.seen if h.get("Authorization")]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def reply(h, status: int, body: bytes, **headers: str) -> None:
    h.send_response(status)
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def redirect(h, location: str, status: int = 307) -> None:
    reply(h, status, b"", Location=location)


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """The registry, and a storage host it redirects to."""
    registry, storage = Server(), Server()
    try:
        yield registry, storage
    finally:
        registry.close()
        storage.close()


def basic_registry(storage: Server, redirect_manifest: bool = False) -> Route:
    """A registry asking for Basic credentials that sends blob (and manifest) GETs to
    ``storage``; the storage host serves them to anyone, as a signed CDN URL does."""

    def route(h) -> bool:
        if h.headers.get("Authorization") != BASIC:
            reply(h, 401, b"", WWW_Authenticate='Basic realm="registry"')
        elif h.path == "/v2/":
            reply(h, 200, b"{}")
        elif "/blobs/" in h.path:
            redirect(h, f"http://{storage.host}/data/blob?sig=1")
        elif "/manifests/" in h.path and redirect_manifest:
            redirect(h, f"http://{storage.host}/data/manifest", 302)
        elif "/manifests/" in h.path:
            reply(h, 200, MANIFEST, Content_Type="application/vnd.oci.image.manifest.v1+json")
        else:
            return False
        return True

    return route


def storage_route(h) -> bool:
    if h.path.startswith("/data/blob"):
        reply(h, 200, BLOB, Content_Type="application/octet-stream")
    elif h.path.startswith("/data/manifest"):
        reply(h, 200, MANIFEST, Content_Type="application/vnd.oci.image.manifest.v1+json")
    else:
        return False
    return True


def client(**kw) -> RegistryClient:
    return RegistryClient(RegistryOptions(tls_verify=False, retries=1, retry_delay=0, **kw))


def read_blob(c: RegistryClient, ref: Reference) -> bytes:
    reader = c.open_blob(ref, BLOB_DIGEST)
    try:
        return reader.read()
    finally:
        reader.close()


def test_a_redirected_blob_and_manifest_are_fetched_without_credentials_on_the_other_host(
    servers,
):
    registry, storage = servers
    registry.route, storage.route = basic_registry(storage, redirect_manifest=True), storage_route
    ref = Reference.parse(f"{registry.host}/lib/app:1")
    with client(creds=f"{USER}:{PASSWORD}") as c:
        assert read_blob(c, ref) == BLOB
        raw, _media_type, digest = c.get_manifest(ref.with_digest(str(Digest.of_bytes(MANIFEST))))
    assert raw == MANIFEST and digest == Digest.of_bytes(MANIFEST)
    assert BASIC in registry.authorizations()
    assert [p for _m, p, _h in storage.seen] == ["/data/blob?sig=1", "/data/manifest"]
    assert storage.authorizations() == []


def test_a_bearer_token_is_not_sent_to_the_storage_host(servers):
    registry, storage = servers
    storage.route = storage_route

    def route(h) -> bool:
        if h.path.startswith("/token"):
            reply(h, 200, json.dumps({"token": TOKEN}).encode())
        elif h.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://{registry.host}/token",service="reg"'
            reply(h, 401, b"", WWW_Authenticate=challenge)
        elif "/blobs/" in h.path:
            redirect(h, f"http://{storage.host}/data/blob")
        else:
            reply(h, 200, b"{}")
        return True

    registry.route = route
    with client(creds=f"{USER}:{PASSWORD}") as c:
        assert read_blob(c, Reference.parse(f"{registry.host}/lib/app:1")) == BLOB
    assert f"Bearer {TOKEN}" in registry.authorizations()
    assert storage.authorizations() == []


def test_a_redirect_loop_ends_with_a_clear_error(servers):
    registry, storage = servers
    basic = basic_registry(storage)

    def route(h) -> bool:
        if "/blobs/" in h.path:  # the registry and the storage host send each other back
            redirect(h, f"http://{storage.host}/data/blob?hop={len(storage.seen)}")
            return True
        return basic(h)

    registry.route = route
    storage.route = lambda h: redirect(h, f"http://{registry.host}/v2/lib/app/blobs/x") or True
    start = time.monotonic()
    with client(creds=f"{USER}:{PASSWORD}") as c, pytest.raises(Unavailable) as err:
        read_blob(c, Reference.parse(f"{registry.host}/lib/app:1"))
    assert time.monotonic() - start < 30
    assert "redirect" in str(err.value) and str(BLOB_DIGEST) in str(err.value)
    assert len(storage.seen) <= 20
    assert storage.authorizations() == []


@pytest.mark.parametrize("monolithic_max", [1 << 20, 0], ids=["streamed-put", "chunked-patch"])
def test_an_upload_location_on_another_host_gets_no_credentials(servers, monolithic_max):
    """containers/image sends the registry's credentials to whatever host an upload's
    Location names; kiln sends them only to the registry it was asked to push to."""
    registry, other = servers

    def route(h) -> bool:
        if h.headers.get("Authorization") != BASIC:
            reply(h, 401, b"", WWW_Authenticate='Basic realm="registry"')
        elif h.path == "/v2/":
            reply(h, 200, b"{}")
        elif h.command == "HEAD":
            reply(h, 404, b"")
        elif h.command == "POST" and h.path.endswith("/blobs/uploads/"):
            reply(h, 202, b"", Location=f"http://{other.host}/upload/1", Range="0-0")
        else:
            return False
        return True

    registry.route = route
    other.route = lambda h: reply(h, 401, b"", WWW_Authenticate='Basic realm="x"') or True
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))

    creds = f"{USER}:{PASSWORD}"
    with client(creds=creds, monolithic_max=monolithic_max) as c, pytest.raises(KilnError) as err:
        c.push_blob(Reference.parse(f"{registry.host}/lib/app:1"), desc, lambda: io.BytesIO(BLOB))
    assert isinstance(err.value, Unauthorized), err.value
    assert other.seen, "the upload went to the Location's host"
    assert other.authorizations() == []
    assert PASSWORD not in str(err.value)


@pytest.mark.parametrize("endless", [False, True], ids=["100MB", "endless"])
def test_a_huge_token_answer_is_refused_without_reading_it_all(servers, endless):
    registry, _storage = servers
    sent = []

    def route(h) -> bool:
        if h.path.startswith("/token"):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            if endless:
                h.send_header("Transfer-Encoding", "chunked")
            else:
                h.send_header("Content-Length", str(100 << 20))
            h.end_headers()
            piece = b' "' + b"x" * 65536 + b'",'
            if endless:
                piece = b"%x\r\n%s\r\n" % (len(piece), piece)
            try:
                start = b'{"token": ['
                h.wfile.write(b"%x\r\n%s\r\n" % (len(start), start) if endless else start)
                for _ in range(100 << 20 if endless else (100 << 20) // len(piece)):
                    h.wfile.write(piece)
                    sent.append(len(piece))
            except OSError:
                pass  # the client stopped reading, as it should
            return True
        if h.headers.get("Authorization", "").startswith("Bearer"):
            reply(h, 200, b"{}")
        else:
            challenge = f'Bearer realm="http://{registry.host}/token",service="reg"'
            reply(h, 401, b"", WWW_Authenticate=challenge)
        return True

    registry.route = route
    start = time.monotonic()
    with client(timeout=60.0) as c, pytest.raises(Unavailable) as err:
        c.get_manifest(Reference.parse(f"{registry.host}/lib/app:1"))
    assert "auth server sent a token answer over" in str(err.value)
    assert time.monotonic() - start < 30
    assert sum(sent) < 20 << 20  # stopped near the cap, not after the whole answer


def endless_chunks(h, status: int, **headers: str) -> None:
    """``status`` with a chunked body that never ends (until the client hangs up)."""
    h.send_response(status)
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    piece = b" " * 65536
    try:
        while True:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
    except OSError:
        pass  # the client hung up, as it should


def test_a_503_whose_body_never_ends_fails_in_bounded_time(servers):
    registry, _storage = servers

    def route(h) -> bool:
        if h.path == "/v2/":
            reply(h, 200, b"{}")
        else:
            endless_chunks(h, 503, Content_Type="application/json")
        return True

    registry.route = route
    start = time.monotonic()
    with client() as c, pytest.raises(Unavailable, match=r"HTTP 503"):
        c.get_manifest(Reference.parse(f"{registry.host}/lib/app:1"))
    assert time.monotonic() - start < 30


def test_an_upload_answer_whose_body_never_ends_fails_in_bounded_time(servers):
    registry, _storage = servers

    def route(h) -> bool:
        if h.path == "/v2/" or h.command == "HEAD":
            reply(h, 200 if h.path == "/v2/" else 404, b"")
        elif h.command == "POST":
            endless_chunks(h, 202, Location="/v2/lib/app/blobs/uploads/1")
        else:
            return False
        return True

    registry.route = route
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    start = time.monotonic()
    with client(timeout=3.0) as c, pytest.raises(Unavailable, match="starting a blob upload"):
        c.push_blob(Reference.parse(f"{registry.host}/lib/app:1"), desc, lambda: io.BytesIO(BLOB))
    assert time.monotonic() - start < 30


def test_a_streamed_upload_redirected_to_another_host_is_a_clear_error(servers):
    """A 307 asks for the body again; a streamed one is sent once (Go's client, thus
    skopeo, returns the 307 itself for a body it cannot replay)."""
    registry, other = servers

    def route(h) -> bool:
        if h.path == "/v2/" or h.command == "HEAD":
            reply(h, 200 if h.path == "/v2/" else 404, b"")
        elif h.command == "POST":
            reply(h, 202, b"", Location="/v2/lib/app/blobs/uploads/1")
        elif h.command == "PUT":
            redirect(h, f"http://{other.host}/upload/1?digest={BLOB_DIGEST}")
        else:
            return False
        return True

    registry.route = route
    other.route = lambda h: reply(h, 201, b"") or True
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    with client() as c, pytest.raises(Unavailable, match="redirected the upload"):
        c.push_blob(Reference.parse(f"{registry.host}/lib/app:1"), desc, lambda: io.BytesIO(BLOB))


def test_https_to_plain_http_is_followed_only_for_content_named_by_its_digest(servers, tmp_path):
    """Storage behind an https registry may be plain http (Go's client, thus skopeo and
    podman, follow such a redirect): a blob or a manifest by digest is verified against
    its digest, so it is fetched there (without the credentials); a manifest by tag is
    not (an eavesdropper on the http leg could change what the tag names)."""
    _registry, storage = servers
    storage.route = storage_route
    ca, cert, key = _write_ca_and_server(str(tmp_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    registry = Server(tls=context)
    try:
        registry.route = basic_registry(storage, redirect_manifest=True)
        (tmp_path / "certs").mkdir()
        shutil.copy(ca, tmp_path / "certs" / "ca.crt")
        options = RegistryOptions(cert_dir=str(tmp_path / "certs"), retries=1, retry_delay=0,
                                  creds=f"{USER}:{PASSWORD}")  # fmt: skip
        ref = Reference.parse(f"{registry.host}/lib/app:1")
        with RegistryClient(options) as c:
            assert read_blob(c, ref) == BLOB
            raw, _media_type, _digest = c.get_manifest(
                ref.with_digest(str(Digest.of_bytes(MANIFEST)))
            )
            assert raw == MANIFEST
            with pytest.raises(Unavailable) as err:
                c.get_manifest(ref)
        assert "from https to plain http" in str(err.value)
        assert BASIC in registry.authorizations()  # it was https, with the credentials
        assert [p for _m, p, _h in storage.seen] == ["/data/blob?sig=1", "/data/manifest"]
        assert storage.authorizations() == []
    finally:
        registry.close()


def _image() -> tuple[bytes, bytes, bytes]:
    """A one-layer image: (layer, config, manifest)."""
    import gzip
    import hashlib
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = 5, 1_700_000_000
        tar.addfile(info, io.BytesIO(b"hello"))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}
    ).encode()  # fmt: skip
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(Digest.of_bytes(config)), "size": len(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": str(Digest.of_bytes(layer)), "size": len(layer)}]}
    ).encode()  # fmt: skip
    return layer, config, manifest


@pytest.mark.root
def test_a_layer_longer_than_its_descriptor_is_cut_off_and_nothing_is_kept(servers, tmp_path):
    """The layer's bytes, then more without end: the pull stops once the descriptor's
    size is passed, and keeps no image and no blob of it."""
    from kiln.errors import KilnError as Error
    from kiln.ops import registry as ops
    from kiln.ops.context import open_context
    from kiln.ops.options import PullRequest

    registry, _storage = servers
    layer, config, manifest = _image()

    def route(h) -> bool:
        if h.path == "/v2/":
            reply(h, 200, b"{}")
        elif "/manifests/" in h.path:
            reply(h, 200, manifest, Content_Type="application/vnd.oci.image.manifest.v1+json")
        elif h.path.endswith(str(Digest.of_bytes(config))):
            reply(h, 200, config)
        elif h.path.endswith(str(Digest.of_bytes(layer))):
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(layer), layer))
                piece = b"\0" * 65536
                for _ in range(1 << 16):  # 4 GiB at most: the client hangs up long before
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                pass
        else:
            return False
        return True

    registry.route = route
    root = str(tmp_path / "root")
    ref = f"{registry.host}/lib/app:1"
    opts = RegistryOptions(tls_verify=False, retries=1, retry_delay=0)
    start = time.monotonic()
    with open_context(root) as ctx:
        with pytest.raises(Error) as err:
            ops.pull(ctx, PullRequest.of(ref, options=opts))
        assert "larger than" in str(err.value), err.value
        assert time.monotonic() - start < 60
        assert not ctx.store.list_images()
        assert not ctx.store.has_blob(Digest.of_bytes(layer))


def test_a_401_whose_body_never_ends_is_still_answered(servers):
    """The challenge is in the headers: the body of a 401 is not waited for."""
    registry, _storage = servers

    def route(h) -> bool:
        if h.path.startswith("/token"):
            reply(h, 200, json.dumps({"token": TOKEN}).encode())
        elif h.headers.get("Authorization") == f"Bearer {TOKEN}":
            reply(h, 200, MANIFEST, Content_Type="application/vnd.oci.image.manifest.v1+json")
        elif h.path == "/v2/":
            reply(h, 200, b"{}")
        else:  # the challenge, then a body that never ends (slowly: a bounded test)
            h.send_response(401)
            h.send_header("WWW-Authenticate", f'Bearer realm="http://{registry.host}/token"')
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                for _ in range(10_000):
                    h.wfile.write(b"1000\r\n%s\r\n" % (b" " * 4096))
                    time.sleep(0.01)
            except OSError:
                pass
        return True

    registry.route = route
    with client(timeout=5.0) as c:
        raw, _media_type, _digest = c.get_manifest(Reference.parse(f"{registry.host}/lib/app:1"))
    assert raw == MANIFEST


def test_a_ping_answer_whose_body_never_ends_is_not_waited_for(servers):
    registry, _storage = servers

    def route(h) -> bool:
        if h.path == "/v2/":  # a body that never ends (slowly: a bounded test)
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                for _ in range(10_000):
                    h.wfile.write(b"1000\r\n%s\r\n" % (b" " * 4096))
                    time.sleep(0.01)
            except OSError:
                pass
        else:
            reply(h, 200, MANIFEST, Content_Type="application/vnd.oci.image.manifest.v1+json")
        return True

    registry.route = route
    with client(timeout=5.0) as c:
        raw, _media_type, _digest = c.get_manifest(Reference.parse(f"{registry.host}/lib/app:1"))
    assert raw == MANIFEST
