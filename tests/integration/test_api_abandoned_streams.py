"""Clients that stop reading a streamed response and then hang up leave ``kiln serve`` as it
was: round after round of them, its open files (the store's ``kiln.db`` and its WAL
included), its threads and its WAL stay flat. Each abandoned save's worker must see the
client gone, end its read transaction, release its lease and close its store; SQLite
defers the close of a connection's descriptors while another connection of the process
holds a lock on the file, so a store closed at the wrong moment, or never, shows here as
descriptors that pile up."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from api_server import (
    busybox_sh_tar,
    dockerfile_context,
    start_server,
    start_server_with_base,
    stop_server,
)
from waits import WAIT_SECONDS, unread, wait_for

pytestmark = [pytest.mark.timeout(600)]

IMAGE_MB = 8  # more than the server queues for a client (4 MiB) and the socket holds
CLIENTS, WARM_UP, ROUNDS = 3, 2, 6
# what a client lets pile up unread before it hangs up: the server has sent it chunks
UNREAD = 64 << 10
# each wait ends on its condition, well before these on any machine

# the first rounds open what the server keeps (its read store, a pool thread's store, and
# the descriptors SQLite keeps for reuse: as many as saves were open at once); later rounds
# add nothing. Slack for a pool thread that starts late, and its store (two descriptors).
SLACK_FDS = 2
SLACK_THREADS = 2
# the WAL is checkpointed into the database at 1 MiB (kiln.util.sqlite): a read
# transaction held by an abandoned save would make it grow without bound
MAX_WAL_BYTES = 4 << 20


def _rootfs(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(size)  # does not compress
        info = tarfile.TarInfo("data/blob")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abandoned-streams")
    log = tmp / "access.log"
    proc, sock = start_server(tmp, access_log=str(log))
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://kiln",
                      timeout=300) as client:  # fmt: skip
        r = client.post("/v1.41/images/create?fromSrc=-&repo=big&tag=1",
                        content=_rootfs(IMAGE_MB << 20),
                        headers={"Content-Type": "application/x-tar"})  # fmt: skip
        assert r.status_code == 200, r.text
    yield proc, sock, tmp, log
    assert stop_server(proc) == 0


def _abandon(sock: str, path: str) -> socket.socket:
    """A client that asks for ``path``, reads a little, then lets ``UNREAD`` bytes pile up
    unread (the server is writing to it); the caller hangs up."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT_SECONDS)
    s.connect(sock)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: kiln\r\n\r\n".encode())
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    wait_for("the server to fill the client's socket", lambda: unread(s) >= UNREAD)
    return s


def _server_state(pid: int, root: Path) -> tuple[int, int, int, int]:
    """Open files, those on the store's database or its WAL, threads, and WAL bytes."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    on_db = sum(1 for t in targets if t.endswith(("kiln.db", "kiln.db-wal")))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    wal = max((p.stat().st_size for p in root.rglob("*.db-wal")), default=0)
    return len(targets), on_db, threads, wal


def _rounds(server, path: str, client) -> list[tuple[int, int, int, int]]:
    """``WARM_UP + ROUNDS`` rounds of ``CLIENTS`` clients ``client(sock)`` that hang up
    together; after the warm-up, the server must be back within what the warm-up left
    after each round. The states sampled."""
    proc, sock, tmp, log = server
    logged = log.read_text().count(f" {path}") if log.exists() else 0
    samples: list[tuple[int, int, int, int]] = []
    for n in range(WARM_UP + ROUNDS):
        clients = [client(sock) for _ in range(CLIENTS)]
        for s in clients:
            s.close()
        logged += CLIENTS
        # the access log's line comes once the response, and the worker it waits on, ended
        wait_for(f"{logged} lines for {path} in the access log", _logged, log, path, logged)
        if n < WARM_UP:
            samples.append(_server_state(proc.pid, tmp / "root"))
            continue
        if n == WARM_UP:
            warm = [max(column) for column in zip(*samples, strict=True)]
            # a worker thread ends just after its response; a pool thread may come or go
            bounds = (
                warm[0] + SLACK_FDS,
                warm[1] + SLACK_FDS,
                warm[2] + SLACK_THREADS,
                MAX_WAL_BYTES,
            )
        wait_for(f"the server to be back within {bounds} after round {n + 1}: {samples}",
                  _within, proc.pid, tmp / "root", bounds, samples)  # fmt: skip
    print(f"after each round of {CLIENTS} (open files, on kiln.db, threads, WAL): {samples}")
    return samples


@pytest.mark.parametrize(
    "path",
    [
        "/v1.41/images/get?names=big:1",
        "/v1.41/images/big:1/get",
        "/v4.3.1/libpod/images/export?references=big:1&format=oci-archive",
    ],
)
def test_abandoned_saves_leave_the_servers_files_threads_and_wal_flat(server, path):
    _rounds(server, path, lambda sock: _abandon(sock, path))


def _cut_load(sock: str, path: str) -> socket.socket:
    """A client that announces an archive of 64 MiB, sends 1 MiB of it; the caller hangs up."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT_SECONDS)
    s.connect(sock)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {64 << 20}\r\n\r\n".encode() + bytes(1 << 20))  # fmt: skip
    return s


@pytest.mark.parametrize("path", ["/v1.41/images/load", "/v4.3.1/libpod/images/load"])
def test_loads_cut_short_leave_the_servers_files_threads_and_wal_flat(server, path):
    _rounds(server, path, lambda sock: _cut_load(sock, path))


def _logged(log: Path, path: str, lines: int) -> bool:
    return log.read_text().count(f" {path}") >= lines


def _within(pid: int, root: Path, bounds: tuple[int, ...], samples: list) -> bool:
    """Whether the server's state is within ``bounds``; if so, it goes to ``samples``."""
    state = _server_state(pid, root)
    if all(x <= b for x, b in zip(state, bounds, strict=True)):
        samples.append(state)
        return True
    return False


# a RUN whose output (50 MB of lines of 1000 bytes: a varlink reply holds 32 of them)
# outlasts any client that stops reading it
NOISY = f"FROM localhost/base:1\nRUN yes {'kiln' * 250} | head -c 50000000\n"


@pytest.fixture(scope="module")
def build_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abandoned-builds")
    log = tmp / "access.log"
    proc, sock = start_server_with_base(tmp, access_log=str(log))
    yield proc, sock, tmp, log
    assert stop_server(proc) == 0


def _abandon_build(sock: str, path: str) -> socket.socket:
    """A client that sends a build of ``NOISY`` and stops reading its output; the caller
    hangs up."""
    context = dockerfile_context(NOISY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(WAIT_SECONDS)
    s.connect(sock)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {len(context)}\r\n\r\n".encode() + context)  # fmt: skip
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    wait_for("the build's output to fill the client's socket", lambda: unread(s) >= UNREAD)
    return s


@pytest.mark.root
@pytest.mark.runc
def test_abandoned_builds_leave_the_servers_files_threads_and_wal_flat(build_server):
    path = "/v1.41/build?t=localhost/noisy:1"
    _rounds(build_server, path, lambda sock: _abandon_build(sock, path))
    # each cancelled RUN's container went with it: nothing is left mounted in the store
    root = str(build_server[2] / "root")
    mounts = Path(f"/proc/{build_server[0].pid}/mountinfo").read_text().split("\n")
    assert [m for m in mounts if f" {root}/" in m] == []


# the varlink listener's grace for calls in flight at a stop (GRACE_SECONDS): a stop that
# waits for a client that stopped reading takes all of it; one that does not, a few seconds
STOPS_WITHIN = 20.0


@pytest.mark.root
@pytest.mark.runc
def test_a_varlink_client_that_stopped_reading_a_build_does_not_hold_up_the_stop(tmp_path):
    pytest.importorskip("varlink")
    (tmp_path / "base.tar").write_bytes(busybox_sh_tar())
    subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(tmp_path / "root"),
                    "import", "-q", str(tmp_path / "base.tar"), "base:1"], check=True,
                   timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    vsock = str(tmp_path / "v.sock")
    proc, _ = start_server(tmp_path, "--varlink", f"unix:{vsock}")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(NOISY.replace("localhost/base:1", "base:1"))
    build = {"contextDir": str(context), "dockerfiles": ["Dockerfile"], "output": "noisy:1"}
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(WAIT_SECONDS)
    try:
        wait_for("the varlink socket", os.path.exists, vsock)
        client.connect(vsock)
        call = {"method": "io.podman.BuildImage", "more": True, "parameters": {"build": build}}
        client.sendall(json.dumps(call).encode() + b"\0")
        # the RUN's lines pile up unread: the server's send to this client blocks
        wait_for(
            "the build's output to fill the client's socket", lambda: unread(client) >= 32 << 10
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOPS_WITHIN)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
    finally:
        client.close()
        if proc.poll() is None:
            stop_server(proc)
    assert code == 0, f"kiln serve had not stopped {took:.1f} s after SIGTERM"
