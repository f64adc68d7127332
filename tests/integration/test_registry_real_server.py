"""kiln.registry against a real registry (Debian's docker-registry) in four set-ups."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import time

import pytest

import registry_servers
from kiln.errors import InvalidArgument, NotFound, Unauthorized, Unavailable
from kiln.oci import Descriptor, Digest, Manifest, Reference, media_types
from kiln.registry import RegistryClient, RegistryOptions
from kiln.registry.login import login, logout
from registry_env import isolate_registry_env

pytestmark = [pytest.mark.root]

# registry_plain, _tls, _basic, _token: the run's shared registries (tests/conftest.py)
start_registry = registry_servers.start_registry


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


class Image:
    """A tiny image made with kiln.oci: a config, one gzip layer, a manifest."""

    def __init__(self, text: str = "hello", image_format: str = "oci"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = text.encode()
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        tar_bytes = buf.getvalue()
        self.layer = gzip.compress(tar_bytes, mtime=0)
        diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
        self.config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/hello"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            },
            sort_keys=True,
        ).encode()
        self.config_desc = Descriptor(
            media_types.config_type_for(image_format),
            Digest.of_bytes(self.config),
            len(self.config),
        )
        self.layer_desc = Descriptor(
            media_types.layer_media_type(image_format, "gzip"),
            Digest.of_bytes(self.layer),
            len(self.layer),
        )
        self.manifest = Manifest.build(
            media_types.manifest_type_for(image_format), self.config_desc, [self.layer_desc]
        )
        self.blobs = {self.config_desc.digest: self.config, self.layer_desc.digest: self.layer}

    def push(self, client: RegistryClient, ref: Reference, mount_from=None) -> list[str]:
        results = [
            client.push_blob(ref, d, lambda d=d: io.BytesIO(self.blobs[d.digest]), mount_from)
            for d in (self.layer_desc, self.config_desc)
        ]
        assert client.put_manifest(ref, self.manifest.raw, self.manifest.media_type) == (
            self.manifest.digest
        )
        return results


def _options(server, **kw) -> RegistryOptions:
    base = dict(
        creds=server.creds,
        cert_dir=server.cert_dir,
        tls_verify=None if server.kind == "tls" else False,
        retry_delay=0.01,
    )
    base.update(kw)
    return RegistryOptions(**base)


def _read_all(stream) -> bytes:
    with stream:
        return stream.read()


KINDS = ["registry_plain", "registry_tls", "registry_basic", "registry_token"]


@pytest.mark.parametrize("kind", KINDS)
def test_push_then_pull_round_trip(kind, request) -> None:
    server = request.getfixturevalue(kind)
    img = Image(f"round trip {kind}")
    ref = Reference.parse(f"{server.host}/kiln/roundtrip:v1")
    with RegistryClient(_options(server)) as client:
        assert img.push(client, ref) == ["uploaded", "uploaded"]
        assert img.push(client, ref) == ["exists", "exists"]
        raw, media_type, digest = client.get_manifest(ref)
        assert (raw, media_type, digest) == (
            img.manifest.raw,
            media_types.OCI_MANIFEST,
            img.manifest.digest,
        )
        by_digest = ref.with_digest(str(digest))
        assert client.get_manifest(by_digest)[2] == digest
        head = client.head_manifest(ref)
        assert (head.digest, head.size) == (digest, len(raw))
        manifest = Manifest.parse(raw, media_type)
        for desc in [manifest.config, *manifest.layers]:
            assert client.has_blob(ref, desc.digest)
            assert _read_all(client.open_blob(ref, desc.digest)) == img.blobs[desc.digest]
        # cross-repo mount within the same registry
        other = Reference.parse(f"{server.host}/kiln/mounted:v1")
        assert img.push(client, other, mount_from=ref) == ["mounted", "mounted"]
        assert client.get_manifest(other)[2] == digest


def test_chunked_and_monolithic_uploads(registry_plain, tmp_path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    path = tmp_path / "blob"
    path.write_bytes(data)
    desc = Descriptor("application/octet-stream", Digest.of_bytes(data), len(data))
    ref = Reference.parse(f"{registry_plain.host}/kiln/chunked:v1")
    opts = _options(registry_plain, chunk_size=1024 * 1024, monolithic_max=1024 * 1024)
    with RegistryClient(opts) as client:
        assert client.push_blob(ref, desc, functools.partial(open, path, "rb")) == "uploaded"
        got = hashlib.sha256(_read_all(client.open_blob(ref, desc.digest))).hexdigest()
        assert got == desc.digest.hex
    ref2 = Reference.parse(f"{registry_plain.host}/kiln/monolithic:v1")
    with RegistryClient(_options(registry_plain)) as client:  # 16 MiB monolithic limit
        assert client.push_blob(ref2, desc, functools.partial(open, path, "rb")) == "uploaded"
        assert client.has_blob(ref2, desc.digest)
    # a stream that does not match its descriptor is refused
    bad = Descriptor("application/octet-stream", Digest.of_bytes(b"x"), len(data))
    with RegistryClient(opts) as client, pytest.raises(InvalidArgument):
        client.push_blob(ref, bad, functools.partial(open, path, "rb"))


def test_tags_pagination_catalog_and_search(registry_plain) -> None:
    img = Image("tags")
    with RegistryClient(_options(registry_plain, page_size=2)) as client:
        base = Reference.parse(f"{registry_plain.host}/kiln/tagged:t0")
        img.push(client, base)
        for i in range(1, 5):
            client.put_manifest(base.with_tag(f"t{i}"), img.manifest.raw, img.manifest.media_type)
        assert sorted(client.list_tags(base)) == [f"t{i}" for i in range(5)]
        assert "kiln/tagged" in client.catalog(registry_plain.host)
        found = client.search("tagged", registry=registry_plain.host)
        assert [r.name for r in found] == [f"{registry_plain.host}/kiln/tagged"]
        assert client.search(f"{registry_plain.host}/tagged")[0].name.endswith("kiln/tagged")


def test_unknown_image_and_tag_wording(registry_plain) -> None:
    img = Image("wording")
    ref = Reference.parse(f"{registry_plain.host}/kiln/known:v1")
    with RegistryClient(_options(registry_plain)) as client:
        img.push(client, ref)
        with pytest.raises(NotFound) as exc:
            client.get_manifest(ref.with_tag("nope"))
        assert str(exc.value) == (
            f"reading manifest nope in {registry_plain.host}/kiln/known: manifest unknown"
        )
        with pytest.raises(NotFound) as exc:
            client.list_tags(Reference.parse(f"{registry_plain.host}/kiln/never"))
        assert "repository not found" in str(exc.value)
        assert "name unknown" in str(exc.value)
        assert client.head_manifest(ref.with_tag("nope")) is None
        with pytest.raises(NotFound, match="blob unknown"):
            _read_all(client.open_blob(ref, Digest.of_bytes(b"absent")))


@pytest.mark.parametrize("kind", ["registry_basic", "registry_token"])
def test_bad_credentials_are_clear_and_secret_free(kind, request, caplog) -> None:
    server = request.getfixturevalue(kind)
    caplog.set_level(logging.DEBUG)
    secret = "Wr0ng-" + server.password
    ref = Reference.parse(f"{server.host}/kiln/secret:v1")
    client = RegistryClient(_options(server, creds=f"{server.username}:{secret}"))
    with client, pytest.raises(Unauthorized) as exc:
        client.get_manifest(ref)
    assert "invalid username/password" in str(exc.value)
    assert secret not in str(exc.value) and secret not in caplog.text
    with RegistryClient(_options(server, creds=None)) as client:
        with pytest.raises(Unauthorized, match="authentication required"):  # noqa: SIM117
            client.get_manifest(ref)
        with pytest.raises(Unauthorized, match="authentication required"):
            Image("anon").push(client, ref)


@pytest.mark.parametrize("kind", ["registry_basic", "registry_token"])
def test_login_verifies_then_writes_authfile(kind, request, tmp_path) -> None:
    server = request.getfixturevalue(kind)
    authfile = tmp_path / "auth.json"
    with pytest.raises(Unauthorized, match="invalid username/password"):
        login(server.host, server.username, "nope", authfile=str(authfile), tls_verify=False)
    assert not authfile.exists()
    login(server.host, server.username, server.password, authfile=str(authfile), tls_verify=False)
    assert oct(authfile.stat().st_mode & 0o777) == "0o600"
    assert server.host in json.loads(authfile.read_text())["auths"]
    ref = Reference.parse(f"{server.host}/kiln/login:v1")
    opts = _options(server, creds=None, authfile=str(authfile))
    with RegistryClient(opts) as client:
        Image("login").push(client, ref)
    assert logout(server.host, authfile=str(authfile)) == [server.host]
    with RegistryClient(opts) as client, pytest.raises(Unauthorized):
        client.get_manifest(ref)


def test_token_auth_with_identity_token(registry_token, tmp_path) -> None:
    ts = registry_token.token_server
    ts.refresh_tokens["refresh-abc"] = registry_token.username
    authfile = tmp_path / "auth.json"
    authfile.write_text(
        json.dumps({"auths": {registry_token.host: {"identitytoken": "refresh-abc"}}})
    )
    before = len(ts.requests)
    ref = Reference.parse(f"{registry_token.host}/kiln/oauth:v1")
    with RegistryClient(_options(registry_token, creds=None, authfile=str(authfile))) as c:
        Image("oauth").push(c, ref)
    assert {m for m, _ in ts.requests[before:]} == {"POST"}


def test_tls_needs_the_ca(registry_tls) -> None:
    ref = Reference.parse(f"{registry_tls.host}/kiln/tls:v1")
    client = RegistryClient(RegistryOptions(retry_delay=0.01))
    with client, pytest.raises(Unavailable) as exc:
        client.list_tags(ref)
    assert "failed to verify certificate" in str(exc.value)
    assert "--cert-dir" in str(exc.value)
    client = RegistryClient(RegistryOptions(tls_verify=False, retry_delay=0.01))
    with client, pytest.raises(NotFound):
        client.list_tags(ref)  # reachable, just empty


def test_plain_http_needs_tls_verify_false(registry_plain) -> None:
    ref = Reference.parse(f"{registry_plain.host}/kiln/http:v1")
    client = RegistryClient(RegistryOptions(retry_delay=0.01))
    with client, pytest.raises(Unavailable, match="server gave HTTP response to HTTPS client"):
        client.list_tags(ref)


def test_registries_conf_mirror_and_blocked(registry_plain, tmp_path, monkeypatch) -> None:
    img = Image("mirror")
    with RegistryClient(_options(registry_plain)) as client:
        img.push(client, Reference.parse(f"{registry_plain.host}/library/mirrored:v1"))
    conf = tmp_path / "mirror.conf"
    conf.write_text(
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
        f'[[registry.mirror]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
        '[[registry]]\nlocation = "blocked.example"\nblocked = true\n'
    )
    with RegistryClient(RegistryOptions(registries_conf=str(conf), retry_delay=0.01)) as client:
        raw, _mt, digest = client.get_manifest(Reference.parse("mirrored:v1"))
        assert digest == img.manifest.digest
        layer = _read_all(client.open_blob(Reference.parse("mirrored:v1"), img.layer_desc.digest))
        assert layer == img.layer
        with pytest.raises(InvalidArgument, match="blocked"):
            client.get_manifest(Reference.parse("blocked.example/x:y"))


def test_skopeo_reads_what_kiln_pushed(registry_plain) -> None:
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed")
    img = Image("skopeo", image_format="docker")
    ref = Reference.parse(f"{registry_plain.host}/kiln/skopeo:v1")
    with RegistryClient(_options(registry_plain)) as client:
        img.push(client, ref)
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    info = json.loads(out.stdout)
    assert info["Digest"] == str(img.manifest.digest)
    assert info["Layers"] == [str(img.layer_desc.digest)]


def test_registry_killed_mid_transfer_then_resumed(tmp_path) -> None:
    data = os.urandom(48 * 1024 * 1024)
    path = tmp_path / "big"
    path.write_bytes(data)
    desc = Descriptor("application/octet-stream", Digest.of_bytes(data), len(data))
    with start_registry("plain", str(tmp_path / "reg")) as server:
        ref = Reference.parse(f"{server.host}/kiln/big:v1")
        with RegistryClient(_options(server, retries=2)) as client:
            client.push_blob(ref, desc, functools.partial(open, path, "rb"))
            reader = client.open_blob(ref, desc.digest)
            hasher = hashlib.sha256(reader.read(1024 * 1024))
            server.kill()
            with pytest.raises(Unavailable) as exc:
                while chunk := reader.read(1024 * 1024):
                    hasher.update(chunk)
            assert "connection" in str(exc.value) and str(desc.digest) in str(exc.value)
            offset = reader.offset
            assert 0 < offset < len(data)
            with pytest.raises(Unavailable):
                client.open_blob(ref, desc.digest)  # still down: a clear error, no hang
            server.start()
            deadline = time.monotonic() + 30  # no hang on the restarted server
            rest = client.open_blob(ref, desc.digest, offset=offset)
            assert rest.supports_range
            hasher.update(_read_all(rest))
            assert time.monotonic() < deadline
            assert hasher.hexdigest() == desc.digest.hex


def test_a_mirror_that_answers_501_is_passed_over_for_the_next_source(registry_plain, tmp_path):
    """A registries.conf mirror that is a plain web server or an old proxy (501 Not
    Implemented): the pull goes on to the registry itself, as a mirror that is down does."""
    import http.server
    import threading

    asked = []

    class NotARegistry(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200 if self.path == "/v2/" else 501)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

    img = Image("behind-a-mirror")
    with RegistryClient(_options(registry_plain)) as client:
        img.push(client, Reference.parse(f"{registry_plain.host}/team/app:v1"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotARegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conf = tmp_path / "mirror.conf"
    conf.write_text(
        f'[[registry]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "127.0.0.1:{server.server_port}"\ninsecure = true\n'
    )
    try:
        with RegistryClient(RegistryOptions(registries_conf=str(conf), retry_delay=0.01)) as c:
            _raw, _mt, digest = c.get_manifest(
                Reference.parse(f"{registry_plain.host}/team/app:v1")
            )
    finally:
        server.shutdown()
        server.server_close()
    assert digest == img.manifest.digest
    assert any(p.startswith("/v2/team/app/manifests/") for p in asked), "the mirror was asked first"
