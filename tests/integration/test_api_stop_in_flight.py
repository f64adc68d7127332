"""SIGTERM to ``kiln serve`` while streamed work is in flight (a save whose client stopped
reading, a build running a long RUN, a build whose client stopped reading, a pull stalled
mid-layer): the server cancels that work through its own cancel paths (the RUN is killed,
its overlay unmounted, its lease dropped), cuts off clients that stopped reading, and exits
0 within seconds, as dockerd ends its in-flight work on SIGTERM. After it: nothing mounted
under the store or its scratch directories, no RUN process, an empty scratch directory,
and ``kiln system check`` clean (no lease, no staged layer).

Before, uvicorn waited its whole 30 s grace for the responses in flight and then cut them
off, leaving a build that was still running to be killed mid-cleanup."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from api_server import dockerfile_context, request, start_server, start_server_with_base
from slow_servers import SilentServer, StallingProxy
from waits import WAIT_SECONDS, unread, wait_for

pytestmark = [pytest.mark.timeout(600)]

# uvicorn's grace was 30 s; a stop that cancels its work takes a few seconds
STOPS_WITHIN = 20.0

UNREAD = 64 << 10  # what a client that stopped reading lets pile up before the stop


class Served:
    """``kiln serve`` on a store, scratch and runtime directories of its own under ``tmp``."""

    def __init__(self, tmp: Path, with_base: bool = False):
        self.tmp, self.root = tmp, tmp / "root"
        self.scratch, self.run = tmp / "scratch", tmp / "run"
        self.scratch.mkdir()
        self.env = dict(os.environ, TMPDIR=str(self.scratch), KILN_RUNTIME_DIR=str(self.run))
        start = start_server_with_base if with_base else start_server
        self.proc, self.sock = start(tmp, env=self.env)

    def kiln(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(self.root),
                               *args], env=self.env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip

    def stop(self, signals: int = 1) -> float:
        """SIGTERM (``signals`` times); the seconds until it exited 0."""
        started = time.monotonic()
        for _ in range(signals):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOPS_WITHIN)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            err = (self.tmp / "server.err").read_text()
            pytest.fail(f"kiln serve still ran {STOPS_WITHIN:.0f} s after SIGTERM:\n{err}")
        took = time.monotonic() - started
        err = (self.tmp / "server.err").read_text()
        assert code == 0, err
        assert "Traceback" not in err, err
        print(f"kiln serve exited {took:.1f} s after SIGTERM")
        return took

    def left_nothing(self, token: str = "") -> None:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        under = [m for m in mounts if any(f" {d}/" in m for d in (self.tmp,))]
        assert under == [], under
        assert os.listdir(self.scratch) == []
        if token:
            assert _processes_running(token) == []
        check = self.kiln("system", "check")
        assert check.returncode == 0, check.stdout + check.stderr

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def served(tmp_path):
    made: list[Served] = []

    def make(**kwargs) -> Served:
        made.append(Served(tmp_path, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _processes_running(token: str) -> list[int]:
    """Processes whose command line holds ``token`` (a number this test picked)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if token.encode() in args:
            found.append(int(pid))
    return found


def _send(sock: str, head: str, body: bytes = b"") -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT_SECONDS)
    s.connect(sock)
    s.sendall(head.encode() + body)
    return s


def _build(sock: str, dockerfile: str) -> socket.socket:
    context = dockerfile_context(dockerfile)
    return _send(sock, "POST /v1.41/build?t=localhost/stopped:1 HTTP/1.1\r\nHost: kiln\r\n"
                       "Content-Type: application/x-tar\r\n"
                       f"Content-Length: {len(context)}\r\n\r\n", context)  # fmt: skip


def _stop_reading(s: socket.socket) -> None:
    """Wait until the server has filled ``s`` (its send to this client now blocks)."""
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    wait_for("the server to fill the client's socket", lambda: unread(s) >= UNREAD)


class _Reader(threading.Thread):
    """Reads ``s`` to its end: what the server sent."""

    def __init__(self, s: socket.socket):
        super().__init__(daemon=True)
        self.s, self.data = s, b""
        self.start()

    def run(self) -> None:
        while chunk := self.s.recv(65536):
            self.data += chunk


def _random_rootfs(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("blob")
        info.size = size
        tf.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def test_a_save_whose_client_stopped_reading_does_not_hold_up_the_stop(served):
    server = served()
    status, _, body = request(server.sock, "POST", "/v1.41/images/create?fromSrc=-&repo=big&tag=1",
                              body=_random_rootfs(8 << 20),
                              headers={"Content-Type": "application/x-tar"})  # fmt: skip
    assert status == 200, body
    client = _send(server.sock, "GET /v1.41/images/get?names=big:1 HTTP/1.1\r\nHost: kiln\r\n\r\n")
    try:
        _stop_reading(client)
        server.stop()
    finally:
        client.close()
    server.left_nothing()


@pytest.mark.root
@pytest.mark.runc
@pytest.mark.parametrize("signals", [1, 2], ids=["SIGTERM", "SIGTERM-twice"])
def test_a_running_build_is_cancelled_by_the_stop(served, signals):
    """The client reads on: its stream ends with the build's error, the RUN is killed."""
    server = served(with_base=True)
    token = str(random.randrange(10**6, 10**7))
    client = _build(server.sock, f"FROM localhost/base:1\nRUN sleep {token}\n")
    try:
        reader = _Reader(client)
        wait_for("the RUN to start", lambda: _processes_running(token) != [])
        server.stop(signals)
        reader.join(WAIT_SECONDS)
        assert not reader.is_alive()
    finally:
        client.close()
    if signals == 1:  # the stream ended (its last chunk) with the build's error, not cut off
        assert reader.data.endswith(b"\r\n0\r\n\r\n"), reader.data[-300:]
        assert b'"error":"the server is stopping' in reader.data, reader.data[-300:]
    server.left_nothing(token)


@pytest.mark.root
@pytest.mark.runc
def test_a_build_whose_client_stopped_reading_does_not_hold_up_the_stop(served):
    server = served(with_base=True)
    noisy = f"FROM localhost/base:1\nRUN yes {'kiln' * 250} | head -c 50000000\n"
    client = _build(server.sock, noisy)
    try:
        _stop_reading(client)
        server.stop()
    finally:
        client.close()
    server.left_nothing()


@pytest.mark.root
def test_a_pull_stalled_mid_layer_is_cancelled_by_the_stop(served, registry_plain):
    server = served()
    layer = server.tmp / "big.tar"
    layer.write_bytes(_random_rootfs(12 << 20))
    assert server.kiln("import", "-q", str(layer), "big:1").returncode == 0
    ref = f"{registry_plain.host}/stop-in-flight/pull:1"
    pushed = server.kiln("push", "--tls-verify=false", "big:1", f"docker://{ref}")
    assert pushed.returncode == 0, pushed.stderr
    assert server.kiln("rmi", "big:1").returncode == 0
    proxy = StallingProxy(registry_plain.host, down=4 << 20)
    try:
        path = f"/v1.41/images/create?fromImage={proxy.host}/stop-in-flight/pull&tag=1"
        client = _send(server.sock, f"POST {path} HTTP/1.1\r\nHost: kiln\r\n"
                                    "Content-Length: 0\r\n\r\n")  # fmt: skip
        try:
            reader = _Reader(client)
            assert proxy.stalled.wait(WAIT_SECONDS), "the pull never reached the stall"
            server.stop()
            reader.join(WAIT_SECONDS)
        finally:
            client.close()
    finally:
        proxy.release()
        proxy.close()
    assert server.kiln("images", "-q").stdout.strip() == ""
    server.left_nothing()


@pytest.mark.parametrize("call", ["login", "distribution"])
def test_a_registry_call_waiting_on_a_silent_registry_is_cancelled_by_the_stop(served, call):
    """``docker login`` (``POST /auth``) and ``GET /distribution`` are not streamed: they
    ran outside the stop's reach, so a registry that accepts and never answers held the
    stop up to the call's deadline (a minute, or more with the lookup's retries)."""
    server = served()
    registry = SilentServer()
    try:
        if call == "login":
            body = json.dumps({"username": "u", "password": "p", "serveraddress": registry.host})
            head = ("POST /v1.41/auth HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
            client = _send(server.sock, head + body)
        else:
            path = f"/v1.41/distribution/{registry.host}/silent/x:1/json"
            client = _send(server.sock, f"GET {path} HTTP/1.1\r\nHost: kiln\r\n\r\n")
        try:
            assert registry.wait_asked(1, WAIT_SECONDS), f"the {call} never reached the registry"
            server.stop()
        finally:
            client.close()
    finally:
        registry.close()
    server.left_nothing()
