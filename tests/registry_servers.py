"""Real registries for tests: Debian's ``docker-registry`` on 127.0.0.1, four set-ups.

Use from any suite::

    from registry_servers import registry_plain, registry_tls, registry_basic, registry_token

(with ``tests/`` on ``sys.path``; or list this module in a root conftest's
``pytest_plugins``). Each session fixture yields a :class:`RegistryServer`:
``.host`` ("127.0.0.1:PORT"), ``.url``, ``.username``/``.password`` (None when
open), ``.cert_dir`` (a certs.d-style dir holding the CA as ``ca.crt``, TLS only),
``.ca_path``, ``.storage``. ``start_registry(kind, workdir)`` starts a private one
(for tests that stop or kill it: ``.kill()``, ``.start()`` again on the same storage).

Kinds: ``plain`` (HTTP, no auth), ``tls`` (HTTPS with a self-signed CA), ``basic``
(HTTP + htpasswd), ``token`` (HTTP + Docker token auth from :class:`TokenServer`),
``schema1`` (plain, and accepting Docker schema 1 manifests).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from dies_with_parent import dies_with_parent

REGISTRY_BIN = "docker-registry"
USERNAME = "kiln-user"
PASSWORD = "s3cret-Pa55word"
TOKEN_SERVICE = "kiln-test-registry"
TOKEN_ISSUER = "kiln-test-issuer"


def have_registry() -> bool:
    return shutil.which(REGISTRY_BIN) is not None


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket listening on 127.0.0.1:``port``."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    if not inodes:
        return False
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(link == f"socket:[{inode}]" for link in links for inode in inodes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- certificates --------------------------------------------------------------------------


def _write_ca_and_server(directory: str) -> tuple[str, str, str]:
    """CA cert, server cert and key (for 127.0.0.1 and localhost) as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return ca_path, cert_path, key_path


# -- token server ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Docker's token specification: ``GET realm?service=&scope=`` (Basic or anonymous;
    ``offline_token=true`` with Basic also issues a refresh token, as Docker Hub's does)
    and the OAuth2 ``POST`` form (password or refresh_token grants). JWTs are RS256 with
    the signing certificate in ``x5c``; the registry trusts that certificate.

    ``users`` maps username -> password; valid users get every action they ask for,
    anonymous requests get no access. ``requests`` records (method, params) seen.
    """

    def __init__(self, directory: str, users: dict[str, str]):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = dict(users)
        self.refresh_tokens: dict[str, str] = {}
        self.requests: list[tuple[str, dict]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln token signer")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = os.path.join(directory, "token-signer.pem")
        with open(self.cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        # port 0: the kernel's free port, bound at once (no window for another process)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def make_token(self, subject: str, scopes: list[str], lifetime: int = 300) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access if subject else [],
        }
        signing = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        ).encode()
        sig = self._key.sign(signing, padding.PKCS1v15(), hashes.SHA256())
        return signing.decode() + "." + _b64url(sig)

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _basic_user(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Basic "):
                    return ""
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user if server.users.get(user) == password else None

            def do_GET(self) -> None:
                query = urllib.parse.urlparse(self.path).query
                params = urllib.parse.parse_qs(query)
                server.requests.append(("GET", params))
                user = self._basic_user()
                if user is None:
                    self._reply(401, {"details": "invalid username or password"})
                    return
                scopes = [s for value in params.get("scope", []) for s in value.split()]
                token = server.make_token(user, scopes)
                answer = {"token": token, "access_token": token, "expires_in": 300}
                if user and params.get("offline_token") == ["true"]:  # a login asks for one
                    answer["refresh_token"] = refresh = uuid.uuid4().hex
                    server.refresh_tokens[refresh] = user
                self._reply(200, answer)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server.requests.append(("POST", form))
                grant = form.get("grant_type", [""])[0]
                user = None
                if grant == "password":
                    name, password = form.get("username", [""])[0], form.get("password", [""])[0]
                    user = name if server.users.get(name) == password else None
                elif grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                if user is None:
                    self._reply(401, {"details": "invalid grant"})
                    return
                scopes = [s for value in form.get("scope", []) for s in value.split()]
                token = server.make_token(user, scopes)
                refresh = uuid.uuid4().hex
                server.refresh_tokens[refresh] = user
                self._reply(
                    200, {"access_token": token, "refresh_token": refresh, "expires_in": 300}
                )

        return Handler


# -- the registry --------------------------------------------------------------------------------


class RegistryExitedEarly(RuntimeError):
    """The registry process ended before it listened (its port taken, a bad config)."""


@dataclass
class RegistryServer:
    kind: str
    workdir: str
    port: int = 0
    username: str | None = None
    password: str | None = None
    ca_path: str | None = None
    cert_dir: str | None = None
    token_server: TokenServer | None = None
    storage: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.kind == "tls" else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def creds(self) -> str | None:
        return f"{self.username}:{self.password}" if self.username else None

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: kiln-test-secret",
        ]
        if self.kind == "schema1":  # distribution 2.x refuses schema 1 pushes unless asked
            lines += ["compatibility:", "  schema1:", "    enabled: true"]
        if self.kind == "tls":
            lines += [
                "  tls:",
                f"    certificate: {os.path.join(self.workdir, 'server.pem')}",
                f"    key: {os.path.join(self.workdir, 'server.key')}",
            ]
        if self.kind == "basic":
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: kiln-test",
                f"    path: {os.path.join(self.workdir, 'htpasswd')}",
            ]
        if self.kind == "token":
            assert self.token_server is not None
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_server.realm}",
                f"    service: {TOKEN_SERVICE}",
                f"    issuer: {TOKEN_ISSUER}",
                f"    rootcertbundle: {self.token_server.cert_path}",
            ]
        path = os.path.join(self.workdir, "config.yml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0) -> None:
        config = self._config()
        with open(os.path.join(self.workdir, "registry.log"), "ab") as log:
            # killed with this process: a killed pytest leaves no registry running
            self.proc = subprocess.Popen(
                dies_with_parent([REGISTRY_BIN, "serve", config]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryExitedEarly(
                    f"docker-registry exited early; see {self.workdir}/registry.log"
                )
            # its own listening socket, not merely something that accepts on the port (a
            # process that took the port after free_port would pass a connect)
            if _listens(self.proc.pid, self.port):
                return
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start listening in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def start_registry(kind: str, workdir: str | None = None) -> Iterator[RegistryServer]:
    """A running registry of ``kind`` ("plain", "tls", "basic", "token"), stopped on exit."""
    if kind not in ("plain", "tls", "basic", "token", "schema1"):
        raise ValueError(f"unknown registry kind {kind}")
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix=f"kiln-registry-{kind}-")
    server = RegistryServer(kind, workdir, port=free_port(), storage=os.path.join(workdir, "data"))
    os.makedirs(server.storage, exist_ok=True)
    if kind == "tls":
        server.ca_path, _c, _k = _write_ca_and_server(workdir)
        server.cert_dir = os.path.join(workdir, "certs.d")
        os.makedirs(server.cert_dir, exist_ok=True)
        shutil.copy(server.ca_path, os.path.join(server.cert_dir, "ca.crt"))
    if kind == "basic":
        server.username, server.password = USERNAME, PASSWORD
        line = subprocess.run(
            ["htpasswd", "-Bbn", USERNAME, PASSWORD], capture_output=True, check=True, text=True
        ).stdout.strip()
        with open(os.path.join(workdir, "htpasswd"), "w") as f:
            f.write(line + "\n")
    if kind == "token":
        server.username, server.password = USERNAME, PASSWORD
        server.token_server = TokenServer(workdir, {USERNAME: PASSWORD})
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except RegistryExitedEarly:
                if attempt == 2:
                    raise
                # free_port's port can be taken before the registry binds it (another
                # server, another run on the machine): try another
                server.port = free_port()
        yield server
    finally:
        server.stop()
        if server.token_server is not None:
            server.token_server.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _fixture(kind: str):
    @pytest.fixture(scope="session")
    def fixture(tmp_path_factory) -> Iterator[RegistryServer]:
        if not have_registry():
            pytest.skip("docker-registry is not installed")
        with start_registry(kind, str(tmp_path_factory.mktemp(f"registry-{kind}"))) as server:
            yield server

    fixture.__name__ = f"registry_{kind}"
    return fixture


registry_plain = _fixture("plain")
registry_tls = _fixture("tls")
registry_basic = _fixture("basic")
registry_token = _fixture("token")
registry_schema1 = _fixture("schema1")
