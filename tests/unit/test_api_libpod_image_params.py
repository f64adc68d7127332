"""The libpod image parameters podman's clients send for save, remove and push: what each
does, and a 400 naming the parameter for a bad value (nothing removed, nothing written).
In process (starlette's TestClient, no sockets)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from starlette.testclient import TestClient

from archive_corpus import REG, tar_of
from kiln.api.app import create_app
from kiln.ops.config import Config

V = "/v4.3.1/libpod"

ONE_FILE = tar_of(("hello", REG, b"hi\n"))  # a layer of one file


@pytest.fixture
def client(tmp_path):
    """A store with localhost/p:1, whose layer is stored uncompressed (loaded from a
    docker-archive), so that compressing it shows."""
    config = Config(root=str(tmp_path / "root"), tmpdir=str(tmp_path))
    with TestClient(create_app(config)) as c:
        r = c.post(f"{V}/images/import?reference=localhost/p:1", content=ONE_FILE)
        assert r.status_code == 200, r.text
        archive = c.get(f"{V}/images/localhost/p:1/get?format=docker-archive").content
        assert c.delete(f"{V}/images/localhost/p:1").status_code == 200
        assert c.post(f"{V}/images/load", content=archive).status_code == 200
        yield c


def _layer_types(body: bytes) -> list[str]:
    """The layers' media types of the one image in a tarred dir: or OCI layout."""
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        names = tf.getnames()
        if "manifest.json" in names:  # dir:
            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        else:
            index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
            blob = "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]
            manifest = json.load(tf.extractfile(blob))  # type: ignore[arg-type]
    return [layer["mediaType"] for layer in manifest["layers"]]


def test_directory_formats_come_as_their_tar_and_compress_gzips_their_layers(client):
    plain = client.get(f"{V}/images/localhost/p:1/get?format=docker-dir")
    assert plain.status_code == 200, plain.text
    assert _layer_types(plain.content) == ["application/vnd.docker.image.rootfs.diff.tar"]
    for url in (f"{V}/images/localhost/p:1/get?format=docker-dir&compress=true",
                f"{V}/images/export?references=localhost/p:1&format=docker-dir&compress=1"):  # fmt: skip
        r = client.get(url)
        assert r.status_code == 200, r.text
        assert _layer_types(r.content) == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    oci = client.get(f"{V}/images/export?references=localhost/p:1&format=oci-dir")
    with tarfile.open(fileobj=io.BytesIO(oci.content)) as tf:
        assert {"oci-layout", "index.json"} <= set(tf.getnames())
    # --uncompressed: kiln's OCI output keeps the stored layers as they are
    r = client.get(f"{V}/images/export?references=localhost/p:1&format=oci-archive"
                   "&ociAcceptUncompressedLayers=true")  # fmt: skip
    assert _layer_types(r.content) == ["application/vnd.docker.image.rootfs.diff.tar"]


def test_lookup_manifest_refuses_an_image_s_name_and_keeps_the_image(client):
    r = client.delete(f"{V}/images/localhost/p:1?lookupManifest=true")
    assert r.status_code == 400 and "not a manifest list" in r.json()["message"]
    r = client.delete(f"{V}/images/remove?images=localhost/p:1&lookupManifest=true")
    assert r.status_code == 200 and "not a manifest list" in r.json()["Errors"][0]
    assert client.get(f"{V}/images/localhost/p:1/exists").status_code == 204


@pytest.mark.parametrize(
    ("method", "url", "param"),
    [
        ("GET", "/images/localhost/p:1/get?compress=maybe", "compress"),
        ("GET", "/images/localhost/p:1/get?format=docker-archive&compress=true", "compress"),
        ("GET", "/images/export?references=localhost/p:1&format=oci-archive&compress=1",
         "compress"),
        ("GET", "/images/export?references=localhost/p:1&ociAcceptUncompressedLayers=2",
         "ociAcceptUncompressedLayers"),
        ("DELETE", "/images/localhost/p:1?lookupManifest=please", "lookupManifest"),
        ("DELETE", "/images/remove?images=localhost/p:1&lookupManifest=x", "lookupManifest"),
        ("POST", "/images/localhost/p:1/push?destination=localhost:1/x&compress=zip",
         "compress"),
        ("POST", "/images/localhost/p:1/push?destination=localhost:1/x&removeSignatures=no!",
         "removeSignatures"),
    ],
)  # fmt: skip
def test_a_bad_value_is_a_400_naming_the_parameter(client, method, url, param):
    r = client.request(method, V + url)
    assert r.status_code == 400, r.text
    assert f'query parameter "{param}"' in r.json()["message"]
    assert client.get(f"{V}/images/localhost/p:1/exists").status_code == 204
