"""``podman --remote save`` to directory formats (``--compress``, ``--uncompressed``) and
``push --compress --remove-signatures`` through ``kiln serve``: what podman's client sends
does what it asks; a pull or push naming a path (``oci:``, ``dir:``...) is refused, as
podman's server refuses it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from api_server import start_server_with_base, stop_server

PODMAN = shutil.which("podman")
pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(300),
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed"),
]


@pytest.fixture
def podman(tmp_path):
    proc, sock = start_server_with_base(tmp_path)

    def run(*args: str, ok: bool = True) -> str:
        """podman's output; with ``ok=False``, its error output (and it must fail)."""
        r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", *args],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert (r.returncode == 0) == ok, f"podman {' '.join(args)}: {r.stderr}"
        return r.stdout if ok else r.stderr

    # a layer stored uncompressed (loaded from a docker-archive), so compressing it shows
    run("save", "-o", str(tmp_path / "base.tar"), "localhost/base:1")
    run("rmi", "localhost/base:1")
    run("load", "-i", str(tmp_path / "base.tar"))
    yield run
    assert stop_server(proc) == 0


def layer_types(directory) -> list[str]:
    if (directory / "manifest.json").exists():  # dir:
        manifest = json.loads((directory / "manifest.json").read_text())
    else:
        index = json.loads((directory / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads((directory / "blobs" / "sha256" / digest).read_text())
    return [layer["mediaType"] for layer in manifest["layers"]]


def test_save_directory_formats_and_compress(podman, tmp_path):
    podman("save", "--format", "docker-dir", "-o", str(tmp_path / "plain"), "localhost/base:1")
    assert layer_types(tmp_path / "plain") == ["application/vnd.docker.image.rootfs.diff.tar"]
    podman("save", "--format", "docker-dir", "--compress", "-o", str(tmp_path / "gz"),
           "localhost/base:1")  # fmt: skip
    assert layer_types(tmp_path / "gz") == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    podman("save", "--format", "oci-dir", "-o", str(tmp_path / "oci"), "localhost/base:1")
    assert (tmp_path / "oci" / "oci-layout").exists() and len(layer_types(tmp_path / "oci")) == 1
    out = tmp_path / "uncompressed.tar"
    podman("save", "--format", "oci-archive", "--uncompressed", "-o", str(out), "localhost/base:1")
    assert out.stat().st_size > 0


def test_push_compress_and_remove_signatures_to_a_registry(podman, registry_plain):
    ref = f"{registry_plain.host}/remote/base:1"
    podman("push", "--tls-verify=false", "--remove-signatures", "--compress",
           "localhost/base:1", f"docker://{ref}")  # fmt: skip
    podman("pull", "--tls-verify=false", ref)


def test_pull_and_push_name_no_path_on_the_server(podman, tmp_path):
    # podman's client sends these as they are written; podman's server refuses them (the
    # paths are the server's, not the client's), and so does kiln: nothing read or written
    podman("save", "--format", "oci-dir", "-o", str(tmp_path / "layout"), "localhost/base:1")
    before = podman("images", "-q", "--no-trunc")
    for source in (f"oci:{tmp_path / 'layout'}", f"dir:{tmp_path / 'layout'}"):
        err = podman("pull", source, ok=False)
        assert "only docker transport is supported" in err, err
    for transport in ("dir", "oci", "oci-archive", "docker-archive"):
        target = tmp_path / f"pushed-{transport}"
        err = podman("push", "localhost/base:1", f"{transport}:{target}", ok=False)
        assert "only docker transport is supported" in err, err
        assert not target.exists()
    assert podman("images", "-q", "--no-trunc") == before
