"""``kiln serve`` on a temporary unix socket, for tests that talk to it as API clients do.

    proc, sock = start_server(tmp_path)        # root: tmp_path/root
    proc, sock = start_server_with_base(tmp_path)  # the same, with localhost/base:1 in it
    ...
    status, headers, body = request(sock, "GET", "/v1.41/images/json")
    assert stop_server(proc) == 0

``busybox_sh_tar()`` is the smallest root filesystem a client can import: Debian's
static busybox as ``/bin/busybox`` and ``/bin/sh``.
"""

from __future__ import annotations

import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from dies_with_parent import dies_with_parent

# seconds for ``kiln serve`` to listen: well under one here, but a loaded CI machine is slower
STARTS_WITHIN = 60.0


def busybox_sh_tar() -> bytes:
    """An uncompressed tar of ``/bin/busybox`` with ``bin/sh`` a symlink to it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tf.addfile(link)
    return buf.getvalue()


def dockerfile_context(dockerfile: str, mtime: int = 0) -> bytes:
    """A build context for ``POST /build``: an uncompressed tar of one ``Dockerfile``."""
    data = dockerfile.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(data), mtime
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def start_server(
    tmp_path: Path,
    *extra: str,
    sock: str | None = None,
    access_log: str = "",
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``kiln --root tmp_path/root serve`` on ``sock`` (default ``tmp_path/kiln.sock``)
    and wait until it accepts connections; its stderr goes to ``tmp_path/server.err``,
    which the failure shows if it never does."""
    sock = sock or str(tmp_path / "kiln.sock")
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(tmp_path / "root"), "serve",
           "-H", f"unix://{sock}", "--access-log", access_log, *extra]  # fmt: skip
    with open(tmp_path / "server.err", "wb") as err:
        proc = subprocess.Popen(dies_with_parent(cmd), stderr=err, env=env)
    deadline = time.monotonic() + STARTS_WITHIN
    while proc.poll() is None and time.monotonic() < deadline:
        if os.path.exists(sock):
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
                return proc, sock
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError(
        f"kiln serve did not listen within {STARTS_WITHIN:.0f} s (exit code {proc.returncode}): "
        + (tmp_path / "server.err").read_text()
    )


def start_server_with_base(
    tmp_path: Path, name: str = "localhost/base:1", **kwargs
) -> tuple[subprocess.Popen, str]:
    """``kiln import`` of :func:`busybox_sh_tar` as ``name`` into ``tmp_path/root``, then
    :func:`start_server` on that store (``kwargs`` go to it)."""
    (tmp_path / "base.tar").write_bytes(busybox_sh_tar())
    subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(tmp_path / "root"),
                    "import", "-q", str(tmp_path / "base.tar"), name], check=True, timeout=120,
                   stdin=subprocess.DEVNULL, env=kwargs.get("env"))  # fmt: skip
    return start_server(tmp_path, **kwargs)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def request(
    sock: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the server on the unix socket ``sock`` (kiln's, or any other
    Docker-API server's): status, headers (names in lower case) and the whole body."""
    conn = _UnixConnection(sock, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def stop_server(proc: subprocess.Popen) -> int:
    """SIGTERM, as a service manager stops it; the exit code. A server still running 30 s
    later is SIGKILLed (and the test fails on the timeout), never left behind."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise
