"""GET /system/df and /libpod/system/df in process: Docker's shapes by API version, podman's."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from ops_image_factory import add_container, make_image
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.store import Store


@pytest.fixture
def client(tmp_path):
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        yield c


def import_image(client, repo: str, data: bytes) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    r = client.post(f"/v1.41/images/create?fromSrc=-&repo={repo}&tag=1", content=buf.getvalue())
    assert r.status_code == 200
    return json.loads(r.text.splitlines()[-1])["status"]


def test_legacy_docker_shape(client):
    a = import_image(client, "a", b"x" * 5000)
    b = import_image(client, "b", b"y" * 9000)
    body = client.get("/v1.41/system/df").json()
    assert set(body) == {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    assert body["Containers"] == body["Volumes"] == body["BuildCache"] == []
    sizes = {i["Id"]: i["Size"] for i in body["Images"]}
    assert set(sizes) == {a, b} and body["LayersSize"] == sum(sizes.values())
    for i in body["Images"]:
        assert i["SharedSize"] == 0 and i["Containers"] == 0 and i["RepoTags"]


def test_new_docker_shape_and_verbose_items(client):
    image_id = import_image(client, "a", b"x" * 5000)
    body = client.get("/v1.52/system/df").json()
    # LayersSize at every version: docker-py's df() users read it (a KeyError before)
    assert set(body) == {
        "LayersSize", "ImageUsage", "ContainerUsage", "VolumeUsage", "BuildCacheUsage"
    }  # fmt: skip
    assert body["LayersSize"] == body["ImageUsage"]["TotalSize"]
    usage = body["ImageUsage"]
    assert usage["TotalCount"] == 1 and usage["ActiveCount"] == 0
    assert usage["TotalSize"] == usage["Reclaimable"] > 0 and "Items" not in usage
    assert body["ContainerUsage"]["TotalCount"] == 0
    verbose = client.get("/v1.56/system/df?verbose=1&type=image").json()
    assert set(verbose) == {"LayersSize", "ImageUsage"}
    assert [i["Id"] for i in verbose["ImageUsage"]["Items"]] == [image_id]


def test_image_usage_measures_only_the_images_docker_images_shows(client, tmp_path):
    """dockerd counts, sizes and shares among the images ``docker images`` shows; kiln left
    a build's intermediate image out of TotalCount only: its container made ActiveCount 1
    of 1 and its layer read as shared with the image built on it."""
    store = Store.open(str(tmp_path / "root"))
    try:
        t = 1_750_000_000  # one build: the step's image and the image built on it
        step = make_image(store, ["a"], [], created=t)
        app = make_image(store, ["a", "b"], ["app:1"], created=t)
        add_container(store, step.id)  # a working container from the build's step
    finally:
        store.close()
    body = client.get("/v1.52/system/df?verbose=1").json()
    usage = body["ImageUsage"]
    [item] = usage["Items"]
    assert (item["Id"], item["SharedSize"], item["Containers"]) == (app.id, 0, 0)
    assert (usage["TotalCount"], usage["ActiveCount"]) == (1, 0)
    assert usage["TotalSize"] == body["LayersSize"] == item["Size"]
    # the step's container still holds layer a: only b's bytes would be freed
    assert 0 < usage["Reclaimable"] < item["Size"]
    legacy = client.get("/v1.41/system/df").json()
    assert [(i["Id"], i["SharedSize"]) for i in legacy["Images"]] == [(app.id, 0)]
    assert legacy["LayersSize"] == item["Size"]


def test_type_filter_and_bad_type(client):
    body = client.get("/v1.44/system/df?type=volume&type=build-cache").json()
    assert body == {"Volumes": [], "BuildCache": []}
    r = client.get("/v1.44/system/df?type=network")
    assert r.status_code == 400 and '"network"' in r.json()["message"]


def test_libpod_shape(client):
    image_id = import_image(client, "a", b"x" * 5000)
    body = client.get("/v4.3.1/libpod/system/df").json()
    assert body["Containers"] == [] and body["Volumes"] == []
    [img] = body["Images"]
    assert img["ImageID"] == image_id.removeprefix("sha256:")
    assert (img["Repository"], img["Tag"]) == ("docker.io/library/a", "1")  # a Docker import
    assert img["UniqueSize"] == img["Size"] == body["ImagesSize"] > 0
    assert img["SharedSize"] == 0 and img["Containers"] == 0 and img["Created"].endswith("Z")


def test_run_cache_mounts_are_the_build_cache_with_their_sizes(client, tmp_path):
    store = Store.open(str(tmp_path / "root"))  # what a RUN --mount=type=cache left
    try:
        path = store.cache_mount_dir("/root/.cache/pip")
        with open(os.path.join(path, "wheel"), "wb") as f:
            f.write(b"w" * 70_000)
        size = sum(os.lstat(p).st_size for p in (path, os.path.join(path, "wheel")))
        with store.cache_mount_lock("/root/.cache/pip", shared=True):  # a RUN uses it now
            legacy = client.get("/v1.41/system/df").json()["BuildCache"]
            usage = client.get("/v1.52/system/df?verbose=1").json()["BuildCacheUsage"]
        assert [(c["Type"], c["Size"], c["InUse"]) for c in legacy] == [
            ("exec.cachemount", size, True)
        ]
        assert usage["TotalCount"] == usage["ActiveCount"] == 1
        assert usage["TotalSize"] == size and usage["Reclaimable"] == 0
        assert [c["ID"] for c in usage["Items"]] == [os.path.basename(path)]
        after = client.get("/v1.52/system/df").json()["BuildCacheUsage"]
        assert after["ActiveCount"] == 0 and after["Reclaimable"] == size
        r = client.post("/v1.41/build/prune?all=1")  # docker builder prune --all
        assert r.status_code == 200 and r.json()["SpaceReclaimed"] >= size
        assert client.get("/v1.52/system/df").json()["BuildCacheUsage"]["TotalCount"] == 0
    finally:
        store.close()


def test_a_build_contexts_checksum_index_is_build_cache_too(client, tmp_path):
    store = Store.open(str(tmp_path / "root"))
    try:
        store.put_context_index(str(tmp_path), [b"KILNCTX1", b"i" * 30_000])
    finally:
        store.close()
    [item] = client.get("/v1.41/system/df").json()["BuildCache"]
    assert item["Type"] == "source.local" and item["Size"] >= 30_000
    assert str(tmp_path) not in json.dumps(item)  # no host path to an API caller
    r = client.post("/v1.41/build/prune?all=1")
    assert r.status_code == 200 and r.json()["SpaceReclaimed"] >= 30_000
    assert client.get("/v1.41/system/df").json()["BuildCache"] == []
