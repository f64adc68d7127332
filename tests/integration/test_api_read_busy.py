"""``kiln serve`` answers every client while the store's database is locked against readers.

Image inspect and exists read the store on the server's event loop. A WAL reader waits
for a lock only when another process holds the WAL index's recovery lock (SQLite takes it
while it rebuilds the index, e.g. after a crash); a wait there on the loop would stall
every client for up to a minute. Here the test holds those locks (fcntl, as SQLite does)
with the index header made stale, so every new read must wait: ten inspects sent
meanwhile must not stop ``_ping`` from answering at once, and all ten answer, right,
when the lock goes.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api_server import start_server_with_base, stop_server

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

# unix VFS: the WAL index's lock bytes start at 120 (write lock 120, recovery lock 122)
SHM_WRITE_LOCK, SHM_RECOVER_LOCK = 120, 122
HEADER_COPY_1 = 0  # the first of the two copies of the index header (48 bytes each)


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("kiln", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _get(sock: str, path: str, timeout: float) -> tuple[int, bytes]:
    conn = _Unix(sock, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class RecoveryLock:
    """Hold the WAL index's write and recovery locks of ``db`` from this process, with the
    index header made stale, as a process rebuilding the index does: readers must wait."""

    def __init__(self, db: Path):
        self.fd = os.open(f"{db}-shm", os.O_RDWR)
        self.saved = b""

    def __enter__(self) -> RecoveryLock:
        for byte in (SHM_WRITE_LOCK, SHM_RECOVER_LOCK):
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        self.saved = os.pread(self.fd, 4, HEADER_COPY_1 + 8)  # the header's change counter
        changed = bytes(b ^ 0xFF for b in self.saved)
        os.pwrite(self.fd, changed, HEADER_COPY_1 + 8)  # copies differ: the index needs rebuilding
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.pwrite(self.fd, self.saved, HEADER_COPY_1 + 8)
            for byte in (SHM_RECOVER_LOCK, SHM_WRITE_LOCK):
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, byte)
        finally:
            os.close(self.fd)


def test_inspects_during_a_database_lock_leave_ping_answering(tmp_path):
    proc, sock = start_server_with_base(tmp_path)
    try:
        status, body = _get(sock, "/v1.41/images/localhost/base:1/json", 30)
        assert status == 200, body  # the loop's store is open, its connection has read
        image_id = json.loads(body)["Id"]
        with ThreadPoolExecutor(10) as pool:
            with RecoveryLock(tmp_path / "root" / "kiln.db"):
                paths = [
                    "/v1.41/images/localhost/base:1/json" if n % 2 else
                    "/v4.0.0/libpod/images/localhost/base:1/json" for n in range(8)
                ] + ["/v4.0.0/libpod/images/localhost/base:1/exists",
                     f"/v1.41/images/{image_id}/json"]  # fmt: skip
                inspects = [pool.submit(_get, sock, p, 90) for p in paths]
                time.sleep(0.5)  # the inspects are in the server, waiting for the lock
                started = time.monotonic()
                assert _get(sock, "/_ping", 5) == (200, b"OK")
                assert _get(sock, "/v1.41/version", 5)[0] == 200
                assert time.monotonic() - started < 5
                assert not any(f.done() for f in inspects), "the lock did not hold the reads"
            results = [f.result(timeout=90) for f in inspects]
        for path, (status, body) in zip(paths, results, strict=True):
            assert status in (200, 204), (path, status, body)
            if status == 200:
                got = json.loads(body)["Id"]
                assert got.removeprefix("sha256:") == image_id.removeprefix("sha256:"), path
        # and the store reads normally on the loop again
        assert _get(sock, "/v1.41/images/localhost/base:1/json", 10)[0] == 200
    finally:
        assert stop_server(proc) == 0
