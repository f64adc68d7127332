"""Every build and pull through ``kiln serve`` ends, with an error when something failed.

A failing stage of a three-stage build, a failing pull inside a build (an unknown image on
the local registry), an unknown base with ``--pull`` and a client that goes away mid-build,
each through the docker CLI, docker-py, ``podman --remote``, raw ``/build`` and raw
``/libpod/build`` with ``jobs`` 1 and 4: each call has a timeout, and the test fails (never
hangs) when the server does not answer in time. One server serves the whole module.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api_server import busybox_sh_tar, dockerfile_context, start_server, stop_server
from registry_servers import RegistryServer

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
CALL_TIMEOUT = 60  # no call may take longer; a hung server fails the test here
ANSWER_WITHIN = 20  # seconds: "an error within seconds", with room for a busy machine

pytestmark = [pytest.mark.root, pytest.mark.timeout(150)]


# -- the server, its registry and its images -------------------------------------------------


class Env:
    def __init__(self, sock: str, tmp: Path, registry: RegistryServer, client_env: dict):
        self.sock, self.tmp, self.registry, self.client_env = sock, tmp, registry, client_env

    def docker(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self.client_env, input=input,
                              capture_output=True, timeout=CALL_TIMEOUT)  # fmt: skip

    def podman(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [PODMAN or "podman", "--remote", "--url", f"unix://{self.sock}", *args]
        return subprocess.run(cmd, env=self.client_env, capture_output=True, timeout=CALL_TIMEOUT)

    def dockerpy(self):
        docker = pytest.importorskip("docker")
        return docker.DockerClient(base_url=f"unix://{self.sock}", version="auto",
                                   timeout=CALL_TIMEOUT)  # fmt: skip


class TrickleProxy:
    """The registry behind a slow link: blobs come at ``rate`` bytes a second."""

    def __init__(self, upstream: str, rate: int = 256 << 10):
        import http.client
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._forward(body=False)

            def do_GET(self) -> None:
                self._forward(body=True)

            def _forward(self, body: bool) -> None:
                conn = http.client.HTTPConnection(upstream, timeout=CALL_TIMEOUT)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.end_headers()
                slow = "/blobs/" in self.path
                try:
                    while body and (chunk := resp.read(rate // 8 if slow else 1 << 16)):
                        self.wfile.write(chunk)
                        if slow:
                            time.sleep(1 / 8)
                except OSError:
                    pass  # the puller went away
                conn.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, registry_plain) -> Iterator[Env]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("never-hangs")
    proxy = TrickleProxy(registry_plain.host)
    conf = tmp / "registries.conf"
    conf.write_text(
        "unqualified-search-registries = []\n"
        f'[[registry]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
        f'[[registry]]\nlocation = "{proxy.host}"\ninsecure = true\n'
    )
    home = tmp / "home"
    home.mkdir()
    server_env = dict(os.environ, KILN_REGISTRIES_CONF=str(conf), HOME=str(home),
                      XDG_RUNTIME_DIR=str(tmp / "run"), KILN_RUNTIME_DIR=str(tmp / "runtime"))  # fmt: skip
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "DOCKER_HOST"):
        server_env.pop(var, None)
    proc, sock = start_server(tmp, env=server_env)
    client_env = dict(server_env, DOCKER_HOST=f"unix://{sock}",
                      DOCKER_CONFIG=str(tmp / "docker-config"))  # fmt: skip
    client_env.pop("DOCKER_BUILDKIT", None)
    (tmp / "docker-config").mkdir()
    (tmp / "docker-config" / "config.json").write_text("{}")  # podman reads it too
    e = Env(sock, tmp, registry_plain, client_env)
    e.slow_host = proxy.host  # type: ignore[attr-defined]
    rootfs = tmp / "rootfs.tar"
    rootfs.write_bytes(busybox_sh_tar())
    for args in (("import", str(rootfs), "base:1"),
                 ("tag", "base:1", f"{registry_plain.host}/never-hangs/base:1"),
                 ("push", f"{registry_plain.host}/never-hangs/base:1")):  # fmt: skip
        r = e.docker(*args)
        assert r.returncode == 0, r.stderr.decode()
    try:
        yield e
    finally:
        proxy.close()
        assert stop_server(proc) == 0


# -- what fails where ----------------------------------------------------------------------


def dockerfile(case: str, reg: str, token: int) -> str:
    """``token`` makes the sleeping RUN findable (and its cache key unique)."""
    if case == "stage":  # the failing stage first: jobs 1 never reaches the sleeper
        text = f"""
            FROM base:1 AS fails
            RUN echo failing && exit 3
            FROM base:1 AS sleeper
            RUN sleep {token}
            FROM base:1
            COPY --from=fails /bin/sh /a
            COPY --from=sleeper /bin/sh /b
            """
    elif case == "pull":  # an unknown image on the registry, beside a sibling that sleeps
        text = f"""
            FROM {reg}/never-hangs/missing:{token} AS fails
            FROM base:1 AS sleeper
            RUN sleep {token}
            FROM base:1
            COPY --from=fails /bin/sh /a
            COPY --from=sleeper /bin/sh /b
            """
    elif case == "pull-always":  # with --pull: the first base pulls, the second cannot
        text = f"""
            FROM {reg}/never-hangs/base:1 AS ok
            RUN true
            FROM {reg}/never-hangs/missing-base:{token}
            COPY --from=ok /bin/sh /x
            """
    else:  # "disconnect": the client goes away while this RUN runs
        text = f"""
            FROM base:1
            RUN echo started && sleep {token}
            """
    return textwrap.dedent(text).lstrip()


EXPECTED = {
    "stage": "exit status 3",
    "pull": "manifest unknown",
    "pull-always": "manifest unknown",
}
# a random start: another run of this suite on the machine sleeps other numbers, so that
# ``sleeping`` finds this run's RUNs only
_tokens = itertools.count(31000 + 1000 * secrets.randbelow(1000))


def sleeping(token: int) -> list[int]:
    """PIDs of processes running ``sleep TOKEN`` (the build's RUN)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"sleep" in argv[0] and argv[1:2] == [str(token).encode()]:
            found.append(int(pid))
    return found


def context_dir(env: Env, text: str) -> Path:
    d = Path(env.tmp) / f"ctx-{time.monotonic_ns()}"
    d.mkdir()
    (d / "Dockerfile").write_text(text)
    return d


# -- raw HTTP over the socket --------------------------------------------------------------


def raw_request(sock: str, target: str, body: bytes = b"", method: str = "POST") -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(CALL_TIMEOUT)
    s.connect(sock)
    head = (f"{method} {target} HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    s.sendall(head.encode() + body)
    return s


def read_raw(s: socket.socket) -> tuple[int, bytes]:
    """Status and body of a whole (chunked or not) response; the server must end it."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        else:
            raise AssertionError(f"the chunked response never ended: {data[-300:]!r}")
        body = out
    return status, body


def read_reply(s: socket.socket) -> tuple[int, list[dict]]:
    status, body = read_raw(s)
    return status, [json.loads(line) for line in body.splitlines() if line.strip()]


def build_target(route: str, jobs: int | None, pull: bool, tag: str = "") -> str:
    q: dict[str, str] = {}
    if route == "libpod":
        q["jobs"] = str(jobs)
        if pull:
            q["pullpolicy"] = "always"
        path = "/v4.3.1/libpod/build"
    else:
        if pull:
            q["pull"] = "1"
        path = "/v1.41/build"
    if tag:
        q["t"] = tag
    return f"{path}?{urllib.parse.urlencode(q)}"


def error_text(status: int, objs: list[dict]) -> str:
    """The error a client shows: the body of an error status, or the stream's last object."""
    if status >= 400:
        assert objs and objs[-1].get("message"), objs
        return objs[-1]["message"]
    assert status == 200 and objs, (status, objs)
    last = objs[-1]
    assert "error" in last, f"the stream ended without an error: {objs[-3:]}"
    assert last["errorDetail"]["message"] == last["error"]  # Docker's shape, docker-py raises it
    return last["error"]


# -- the clients ---------------------------------------------------------------------------

CLIENTS = ["docker-cli", "docker-py", "podman", "raw-build", "raw-libpod-1", "raw-libpod-4"]


def run_failing_build(env: Env, client: str, text: str, pull: bool) -> str:
    """Run the build through ``client``; it must fail; returns the error text it shows."""
    if client == "docker-cli":
        ctx = context_dir(env, text)
        r = env.docker("build", *(["--pull"] if pull else []), str(ctx))
        assert r.returncode != 0, r.stdout.decode()
        return r.stderr.decode()
    if client == "podman":
        if PODMAN is None:
            pytest.skip("podman not installed")
        ctx = context_dir(env, text)
        r = env.podman("build", "--jobs", "4", *(["--pull=always"] if pull else []), str(ctx))
        assert r.returncode != 0, r.stdout.decode()
        return r.stderr.decode()
    if client == "docker-py":
        import docker.errors

        ctx = context_dir(env, text)
        c = env.dockerpy()
        try:
            c.images.build(path=str(ctx), pull=pull, rm=True)
        except docker.errors.BuildError as exc:
            return str(exc)
        except docker.errors.APIError as exc:
            return str(exc.explanation)
        finally:
            c.close()
        raise AssertionError("docker-py built an image from a failing build")
    route = "docker" if client == "raw-build" else "libpod"
    jobs = int(client.rsplit("-", 1)[-1]) if route == "libpod" else None
    s = raw_request(env.sock, build_target(route, jobs, pull), dockerfile_context(text))
    return error_text(*read_reply(s))


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", ["stage", "pull", "pull-always"])
def test_failing_build_answers_with_its_error(env, case, client):
    token = next(_tokens)
    text = dockerfile(case, env.registry.host, token)
    started = time.monotonic()
    message = run_failing_build(env, client, text, pull=case == "pull-always")
    took = time.monotonic() - started
    assert EXPECTED[case] in message, message
    assert took < ANSWER_WITHIN, f"{client} waited {took:.1f}s for the error"
    if case != "pull-always":
        deadline = time.monotonic() + 10
        while sleeping(token) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleeping(token) == [], "the sibling stage's RUN outlived the failed build"


def test_failing_stage_stops_a_sibling_waiting_on_a_slow_pull(env):
    """The sibling's pull (24 s over the slow link) stops at its next progress event."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        info = tarfile.TarInfo("big.bin")
        info.size = 6 << 20
        tf.addfile(info, io.BytesIO(os.urandom(info.size)))
    big = f"{env.registry.host}/never-hangs/big:1"
    other_root = str(Path(env.tmp) / "other-root")  # the server's store never sees its blobs
    for args in (["import", "-", big], ["push", "--tls-verify=false", big]):
        r = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", other_root, *args],
                           input=layer.getvalue() if args[0] == "import" else None,
                           capture_output=True, timeout=CALL_TIMEOUT)  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
    text = f"""
        FROM base:1 AS fails
        RUN exit 3
        FROM {env.slow_host}/never-hangs/big:1 AS slow
        FROM base:1
        COPY --from=fails /bin/sh /a
        COPY --from=slow /big.bin /b
        """
    started = time.monotonic()
    s = raw_request(
        env.sock, build_target("docker", None, False), dockerfile_context(textwrap.dedent(text))
    )
    message = error_text(*read_reply(s))
    took = time.monotonic() - started
    assert "exit status 3" in message, message
    assert took < 12, f"the error waited {took:.1f}s for the sibling's pull"
    r = env.docker("image", "inspect", f"{env.slow_host}/never-hangs/big:1")
    assert r.returncode != 0 and b"No such image" in r.stderr, (
        f"the stopped pull left an image? {r.stderr!r}"
    )


# -- a client that goes away mid-build -----------------------------------------------------


def start_client_build(env: Env, client: str, text: str) -> Callable[[], None]:
    """Start the build through ``client``; returns how to make that client go away."""
    if client in ("docker-cli", "podman", "docker-py"):
        if client == "podman" and PODMAN is None:
            pytest.skip("podman not installed")
        ctx = context_dir(env, text)
        if client == "docker-cli":
            cmd = [DOCKER, "build", str(ctx)]
        elif client == "podman":
            cmd = [PODMAN or "podman", "--remote", "--url", f"unix://{env.sock}", "build",
                   "--jobs", "4", str(ctx)]  # fmt: skip
        else:
            code = ("import docker, sys\n"
                    f"c = docker.DockerClient(base_url='unix://{env.sock}', timeout=60)\n"
                    f"for line in c.api.build(path={str(ctx)!r}, decode=True):\n"
                    "    print(line, flush=True)\n")  # fmt: skip
            cmd = [sys.executable, "-c", code]
        proc = subprocess.Popen(cmd, env=env.client_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip

        def go_away() -> None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=CALL_TIMEOUT)

        return go_away
    route = "docker" if client == "raw-build" else "libpod"
    jobs = int(client.rsplit("-", 1)[-1]) if route == "libpod" else None
    s = raw_request(env.sock, build_target(route, jobs, False, tag="never-tagged"),
                    dockerfile_context(text))  # fmt: skip
    return s.close


@pytest.mark.parametrize("client", CLIENTS)
def test_client_going_away_stops_the_build(env, client):
    token = next(_tokens)
    go_away = start_client_build(env, client, dockerfile("disconnect", "", token))
    deadline = time.monotonic() + ANSWER_WITHIN
    while not sleeping(token):
        assert time.monotonic() < deadline, "the build's RUN never started"
        time.sleep(0.1)
    go_away()
    gone_at = time.monotonic()
    while sleeping(token) and time.monotonic() - gone_at < 10:
        time.sleep(0.1)
    assert sleeping(token) == [], "the RUN of a build nobody waits for kept running"
    # the server keeps serving: /_ping, then a new build
    assert read_raw(raw_request(env.sock, "/_ping", method="GET")) == (200, b"OK")
    ok = raw_request(env.sock, build_target("docker", None, False, tag=f"after-{token}"),
                     dockerfile_context(f"FROM base:1\nLABEL after={token}\n"))  # fmt: skip
    status, objs = read_reply(ok)
    assert status == 200 and any("aux" in o for o in objs), objs
    r = env.docker("image", "inspect", "--format", "{{json .RepoTags}}", "never-tagged")
    assert r.returncode != 0 and b"No such image" in r.stderr, (
        f"a cancelled build tagged its image? {r.stderr!r}"
    )


# -- pulls and pushes report what happened -------------------------------------------------


def test_dockerpy_pull_of_unknown_manifest_raises(env):
    import docker.errors

    c = env.dockerpy()
    try:
        repo = f"{env.registry.host}/never-hangs/base"
        c.images.get("base:1").tag(repo, "gone")  # a local image of that name proves nothing
        with pytest.raises(docker.errors.APIError, match="manifest unknown"):
            c.api.pull(repo, "gone")
        with pytest.raises(docker.errors.APIError, match="manifest unknown"):
            c.images.pull(repo, "gone")
    finally:
        c.close()


def test_dockerpy_pull_refused_credentials_raises(env, registry_basic):  # noqa: F811
    import docker.errors

    c = env.dockerpy()
    try:
        repo = f"{registry_basic.host}/never-hangs/private"
        c.images.get("base:1").tag(repo, "1")
        with pytest.raises(docker.errors.APIError, match="unauthorized"):
            c.images.pull(repo, "1")
    finally:
        c.close()
    # the docker CLI does not stop to ask for a login (nor wait forever on its stdin)
    r = subprocess.run([DOCKER, "pull", f"{repo}:1"], env=env.client_env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    assert r.returncode != 0 and b"unauthorized" in r.stderr, r.stderr


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
def test_podman_remote_push_exits_zero(env):
    dest = f"{env.registry.host}/never-hangs/pushed:1"
    r = env.podman("push", "--tls-verify=false", "base:1", dest)
    assert r.returncode == 0, r.stderr.decode()
    r = env.docker("pull", dest)
    assert r.returncode == 0, r.stderr.decode()


def test_docker_build_dockerfile_from_stdin_and_outside_the_context(env):
    ctx = context_dir(env, "")
    (ctx / "Dockerfile").unlink()
    (ctx / "hello.txt").write_text("hello\n")
    text = "FROM base:1\nCOPY hello.txt /hello.txt\n"
    r = env.docker("build", "-t", "from-stdin:1", "-f-", str(ctx), input=text.encode())
    assert r.returncode == 0, r.stderr.decode()
    outside = Path(env.tmp) / "Dockerfile.outside"
    outside.write_text(text + "LABEL outside=yes\n")
    r = env.docker("build", "-t", "outside:1", "-f", str(outside), str(ctx))
    assert r.returncode == 0, r.stderr.decode()
    r = env.docker("image", "inspect", "--format", "{{json .Config.Labels}}", "outside:1")
    assert json.loads(r.stdout) == {"outside": "yes"}
