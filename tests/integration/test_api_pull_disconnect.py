"""A pull through ``kiln serve`` whose registry stalls mid-blob ends when its client goes
away: the request's cancel flag reaches the pull's socket reads. Before, the pull kept its
thread and its connection until the registry's read timeout (60 s a read, then retries)."""

from __future__ import annotations

import io
import os
import socket
import tarfile

import pytest

from api_server import request, start_server, stop_server
from slow_servers import StallingProxy

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

LAYER_BYTES = 4 << 20  # random: gzip leaves it as big, so the stall falls inside the blob
STALL_AFTER = 1 << 20
# the pull lets go at once (well under a second here); the read timeout it beats is 60 s
LETS_GO_WITHIN = 30


def _big_rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("big")
        info.size = LAYER_BYTES
        tf.addfile(info, io.BytesIO(os.urandom(LAYER_BYTES)))
    return buf.getvalue()


def test_a_stalled_pull_ends_when_its_client_disconnects(tmp_path, registry_plain):
    proc, sock = start_server(tmp_path)
    try:
        repo = f"{registry_plain.host}/disconnect/big"
        status, _, body = request(sock, "POST", f"/v1.41/images/create?fromSrc=-&repo={repo}&tag=1",
                                  body=_big_rootfs(), headers={"Content-Type": "application/x-tar"})  # fmt: skip
        assert status == 200, body
        status, _, body = request(sock, "POST", f"/v1.41/images/{repo}/push?tag=1",
                                  headers={"X-Registry-Auth": "e30="})  # fmt: skip
        assert status == 200 and b"errorDetail" not in body, body
        assert request(sock, "DELETE", f"/v1.41/images/{repo}:1")[0] == 200
        proxy = StallingProxy(registry_plain.host, down=STALL_AFTER)
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(sock)
                client.sendall(
                    f"POST /v1.41/images/create?fromImage={proxy.host}/disconnect/big&tag=1 "
                    "HTTP/1.1\r\nHost: kiln\r\nContent-Length: 0\r\n\r\n".encode()
                )
                assert proxy.stalled.wait(120), "the pull never reached the layer"
            assert proxy.stalled_link_closed.wait(LETS_GO_WITHIN), (
                "the pull kept reading its stalled registry after its client went away"
            )
        finally:
            proxy.close()
    finally:
        assert stop_server(proc) == 0
