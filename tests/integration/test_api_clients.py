"""docker-py and ``podman --remote`` against ``kiln serve`` on a temporary unix socket."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

PODMAN = shutil.which("podman")


def has_ops(name: str) -> bool:
    return importlib.util.find_spec(f"kiln.ops.{name}") is not None


@pytest.fixture
def sock(tmp_path):
    proc, path = start_server(tmp_path)
    yield path
    assert stop_server(proc) == 0


@pytest.fixture
def client(sock):
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=f"unix://{sock}", version="auto")
    c.images.client.api.import_image_from_data(busybox_sh_tar(), repository="base", tag="1")
    yield c
    c.close()


def test_dockerpy_images(client):
    img = client.images.get("base:1")
    assert img.tags == ["base:1"] and img.id.startswith("sha256:")
    assert [i.id for i in client.images.list()] == [img.id]
    img.tag("copy", "2")
    assert sorted(client.images.get(img.id).tags) == ["base:1", "copy:2"]
    client.images.remove("copy:2")
    assert client.images.get(img.id).tags == ["base:1"]
    data = b"".join(img.save())
    client.images.remove("base:1")
    assert client.images.list() == []
    [loaded] = client.images.load(data)
    assert loaded.id == img.id
    with pytest.raises(Exception) as err:
        client.images.get("nosuch:1")
    assert type(err.value).__name__ == "ImageNotFound"


@pytest.mark.skipif(not has_ops("build"), reason="waiting for ops.build")
@pytest.mark.root
def test_dockerpy_build(client, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM base:1\nLABEL made=kiln\nCMD ["sh"]\n')
    image, logs = client.images.build(path=str(ctx), tag="built:1")
    assert image.tags == ["built:1"]
    assert image.labels == {"made": "kiln"} and image.attrs["Config"]["Cmd"] == ["sh"]
    lines = list(client.api.build(path=str(ctx), tag="built:2", decode=True))
    assert any("aux" in line and line["aux"]["ID"] == image.id for line in lines)
    assert any("Successfully tagged built:2" in line.get("stream", "") for line in lines)
    # a label named "", as dockerd sets it
    labelled, _ = client.images.build(path=str(ctx), tag="built:3", labels={"": "x"})
    assert labelled.labels == {"made": "kiln", "": "x"}
    # a Dockerfile that is not in the context fails before the build starts: an error
    # status, as dockerd answers ("do not write a 200 when nothing was written yet")
    docker = pytest.importorskip("docker")
    with pytest.raises(docker.errors.APIError) as err:
        list(client.api.build(path=str(ctx), buildargs=None, dockerfile="Missing", decode=True))
    assert err.value.status_code == 400 and "Missing" in str(err.value)
    # one that fails once the build runs still reports the error in the stream
    (ctx / "Dockerfile.bad").write_text("FROM base:1\nRUN exit 3\n")
    bad = list(client.api.build(path=str(ctx), dockerfile="Dockerfile.bad", decode=True))
    assert "error" in bad[-1] and bad[-1]["errorDetail"]["message"]


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
def test_podman_remote(sock, tmp_path):
    env = dict(os.environ)

    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [PODMAN, "--remote", "--url", f"unix://{sock}", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.stderr}")
        return r

    (tmp_path / "rootfs.tar").write_bytes(busybox_sh_tar())
    podman("import", str(tmp_path / "rootfs.tar"), "base:1")
    names = [n for i in json.loads(podman("images", "--format", "json").stdout) for n in i["Names"]]
    assert names == ["localhost/base:1"]
    [data] = json.loads(podman("image", "inspect", "base:1").stdout)
    assert data["RepoTags"] == ["localhost/base:1"]
    # as podman's own service: every name's repository with the manifest digest
    assert data["RepoDigests"] == [f"localhost/base@{data['Digest']}"]
    assert podman("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "4.3.1"
    hist = podman("history", "--no-trunc", "--format", "{{.ID}}", "base:1").stdout.split()
    assert hist[0] == data["Id"]
    df = podman("system", "df").stdout
    assert re.search(r"^Images\s+1\s+0\s", df, re.M) and re.search(r"^Containers\s+0\s", df, re.M)
    df = podman("system", "df", "-v").stdout
    assert re.search(r"localhost/base\s+1\s+" + data["Id"][:12], df)
    podman("tag", "base:1", "other:2")
    images = json.loads(podman("images", "--format", "json").stdout)
    assert sorted({n for i in images for n in i["Names"]}) == [
        "localhost/base:1",
        "localhost/other:2",
    ]
    podman("rmi", "other:2")
    podman("save", "-o", str(tmp_path / "saved.tar"), "base:1")
    podman("rmi", "base:1")
    assert podman("images", "-q").stdout.strip() == ""
    assert (
        "Loaded image: localhost/base:1" in podman("load", "-i", str(tmp_path / "saved.tar")).stdout
    )
    r = podman("rmi", "nosuch", check=False)
    assert r.returncode != 0 and "nosuch" in r.stderr
    if has_ops("build"):
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text("FROM base:1\nLABEL from=containerfile\n")
        out = podman("build", "-t", "built:1", str(ctx)).stdout
        assert "Successfully tagged localhost/built:1" in out
        [built] = json.loads(podman("image", "inspect", "built:1").stdout)
        assert built["Labels"] == {"from": "containerfile"}
        assert out.strip().splitlines()[-1] == built["Id"]
