"""Uploads to ``kiln serve`` are bounded (issue: hostile inputs, class 6): a build context,
``docker load`` archive or import body over ``KILN_MAX_UPLOAD_BYTES`` is refused with a
400 naming the cap, nothing is loaded, and the server keeps serving."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from api_server import start_server, stop_server

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
LIMIT = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("upload-bounds")
    proc, sock = start_server(tmp, env=dict(os.environ, KILN_MAX_UPLOAD_BYTES=str(LIMIT)))
    try:
        yield tmp, sock
    finally:
        assert stop_server(proc) == 0


def _post(sock: str, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "--unix-socket", sock, "-X", "POST",
         "-H", f"Content-Type: {content_type}", "--data-binary", "@-",
         "-w", "\n%{http_code}", f"http://d{path}"],
        input=body, capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    text, _, code = r.stdout.decode().rpartition("\n")
    return int(code), text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1.41/images/load", "application/x-tar"),
        ("/v1.41/build?t=big:1", "application/x-tar"),
        ("/v1.41/images/create?fromSrc=-&repo=big&tag=1", "application/x-tar"),
        ("/v4.0.0/libpod/images/load", "application/x-tar"),
    ],
)
def test_an_upload_over_the_cap_is_refused(server, path, content_type):
    tmp, sock = server
    code, text = _post(sock, path, b"\0" * (3 * LIMIT), content_type)
    assert code == 400 or '"errorDetail"' in text, (code, text)
    assert "KILN_MAX_UPLOAD_BYTES" in text
    images = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--unix-socket", sock, "http://d/v1.41/images/json"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(images) == []  # nothing was loaded, built or imported
    assert list(tmp.rglob("kiln-upload-*")) == []
