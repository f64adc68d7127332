"""Image prune over the API reports the bytes that actually left the disk (SpaceReclaimed,
libpod's Size), not the sum of the pruned images' sizes."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "root")


@pytest.fixture
def client(root, tmp_path):
    with TestClient(create_app(Config(root=root, tmpdir=str(tmp_path)))) as c:
        yield c


def rootfs(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(size)  # incompressible: the blob is as big as the file
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def import_image(client, repo: str, data: bytes) -> str:
    r = client.post(
        f"/v1.41/images/create?fromSrc=-&repo={repo}&tag=1",
        content=data,
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 200, r.text
    return json.loads(r.text.splitlines()[-1])["status"]


def store_bytes(root: str) -> int:
    """Apparent size of every file and directory below the store's blobs and snapshots (du -b;
    an imported image's layer is unpacked, and its directories leave the disk with it)."""
    total = 0
    for sub in ("blobs", "snapshots/layers", "snapshots/active", "snapshots/tmp"):
        for base, dirs, files in os.walk(os.path.join(root, sub)):
            total += sum(os.lstat(os.path.join(base, f)).st_size for f in files + dirs)
    return total


def test_docker_prune_reports_what_left_the_disk(client, root):
    import_image(client, "one", rootfs("a.bin", 300_000))
    import_image(client, "two", rootfs("b.bin", 200_000))
    time.sleep(0.02)  # a blob written in the deletion's clock tick keeps its grace period
    before = store_bytes(root)
    r = client.post('/v1.41/images/prune?filters={"dangling":["false"]}')
    assert r.status_code == 200, r.text
    body = r.json()
    assert len([d for d in body["ImagesDeleted"] if "Deleted" in d]) == 2
    freed = before - store_bytes(root)
    assert freed > 500_000  # the layers went at once, grace period or not
    assert body["SpaceReclaimed"] == freed
    assert client.get("/v1.41/images/json").json() == []


def test_libpod_prune_sizes_sum_to_what_left_the_disk(client, root):
    import_image(client, "one", rootfs("a.bin", 100_000))
    time.sleep(0.02)
    before = store_bytes(root)
    r = client.post("/v4.3.1/libpod/images/prune?all=true")
    assert r.status_code == 200, r.text
    freed = before - store_bytes(root)
    assert freed > 100_000
    assert sum(i["Size"] for i in r.json()) == freed


def test_nothing_to_prune_reclaims_nothing(client, root):
    import_image(client, "kept", rootfs("a.bin", 1000))
    r = client.post("/v1.41/images/prune")  # dangling only: the named image stays
    assert r.json() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
