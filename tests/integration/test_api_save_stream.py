"""``GET /images/{name}/get`` streams the archive as it is written: nothing is spooled."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import httpx
import pytest

from api_server import start_server, stop_server

# twice the size _spooled looks for, and far more than the socket and pipe buffers between
# the writer and the client: an archive written to disk first would show
LAYER_MB = 64


def _big_rootfs(path) -> None:
    """A rootfs tar of LAYER_MB MiB of random bytes (they do not compress)."""
    with tarfile.open(path, "w") as tf:
        for i in range(LAYER_MB // 16):
            data = os.urandom(16 << 20)
            info = tarfile.TarInfo(f"data/blob{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _spooled(scratch) -> list[tuple[str, int]]:
    """Files of more than 32 MiB under the scratch directory (a spooled archive would be one)."""
    out = []
    for dirpath, _, files in os.walk(scratch):
        for name in files:
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
            if size > 32 << 20:
                out.append((name, size))
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("save-stream")
    scratch = tmp / "scratch"
    scratch.mkdir()
    proc, sock = start_server(tmp, env=dict(os.environ, KILN_TMPDIR=str(scratch)))
    client = httpx.Client(
        transport=httpx.HTTPTransport(uds=sock), base_url="http://kiln", timeout=300
    )
    rootfs = tmp / "rootfs.tar"
    _big_rootfs(rootfs)
    with open(rootfs, "rb") as f:
        r = client.post(
            "/v1.41/images/create?fromSrc=-&repo=big&tag=1",
            content=f,
            headers={"Content-Type": "application/x-tar"},
        )
    assert r.status_code == 200, r.text
    rootfs.unlink()
    yield client, tmp, scratch
    client.close()
    assert stop_server(proc) == 0


def _kiln_save(tmp, *args: str) -> bytes:
    out = tmp / "cli.tar"
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(tmp / "root"), "save"]
    subprocess.run([*cmd, "-o", str(out), *args], check=True, capture_output=True)
    try:
        return out.read_bytes()
    finally:
        out.unlink()


@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("/v1.41/images/big:1/get", ["big:1"]),
        ("/v1.41/images/get?names=big:1", ["big:1"]),
        (
            "/v4.3.1/libpod/images/big:1/get?format=oci-archive",
            ["--format", "oci-archive", "big:1"],
        ),
    ],
)
def test_save_streams_while_writing_and_matches_kiln_save(big, url, args):
    client, tmp, scratch = big
    got = io.BytesIO()
    spooled_at_first_chunk = None
    with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-tar"
        for chunk in resp.iter_raw():
            if spooled_at_first_chunk is None:
                spooled_at_first_chunk = _spooled(scratch)
                assert got.tell() == 0 and len(chunk) < LAYER_MB << 20
            got.write(chunk)
    assert spooled_at_first_chunk == []  # the archive is not written to disk first
    want = _kiln_save(tmp, *args)
    if "/libpod/" in url:
        assert hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(want).digest()
        return
    # the Docker route names the image as dockerd does (big:1), kiln save as podman does
    got_members, want_members = _members(got.getvalue()), _members(want)
    assert [n for n, _ in got_members] == [n for n, _ in want_members]
    for (name, data), (_, wanted) in zip(got_members, want_members, strict=True):
        if name == "manifest.json":
            expected = json.loads(wanted)
            assert expected[0]["RepoTags"] == ["docker.io/library/big:1"]
            expected[0]["RepoTags"] = ["big:1"]
            assert json.loads(data) == expected
        elif name == "repositories":
            assert json.loads(data) == {"big": json.loads(wanted)["docker.io/library/big"]}
        else:
            assert data == wanted, name


def _members(archive: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        return [(m.name, tf.extractfile(m).read() if m.isfile() else b"") for m in tf]


def test_a_client_that_goes_away_stops_the_save(big):
    client, tmp, scratch = big
    with client.stream("GET", "/v1.41/images/big:1/get") as resp:
        assert resp.status_code == 200
        first = next(resp.iter_raw())
        assert first
    # the writer stopped and left nothing behind; the server serves the next save in full
    assert _spooled(scratch) == []
    assert client.get("/_ping").text == "OK"
    r = client.get("/v1.41/images/big:1/get")
    assert r.status_code == 200 and len(r.content) > LAYER_MB << 20
    assert sorted(os.listdir(scratch)) == []
