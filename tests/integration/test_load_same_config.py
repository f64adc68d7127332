"""An image's ID is its config's digest, as Docker's and podman's: ``kiln load`` of a
``docker save`` of an image already pulled (the same config, a manifest the archive
synthesises) adds its names and leaves the pulled image's manifest digest and repo digests
as the registry has them; a config that is the same JSON in other bytes is another image,
and the first one is untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from registry_env import isolate_registry_env

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
KILN = shutil.which("kiln")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch)


def kiln(root, *args: str) -> str:
    if KILN is None:
        pytest.skip("the kiln console script is not installed")
    env = dict(os.environ, KILN_ROOT=str(root))
    res = subprocess.run([KILN, *args], env=env, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    assert res.returncode == 0, (args, res.stderr)
    return res.stdout


def inspect(root, name: str) -> dict:
    return json.loads(kiln(root, "inspect", name))[0]


def reencode_config(archive: str, out: str, tag: str) -> str:
    """``archive`` (a docker-archive) with its config indented: the same JSON, other
    bytes; named ``tag``. Returns the new config's digest."""
    with tarfile.open(archive) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    manifest = json.loads(files.pop("manifest.json"))
    raw = json.dumps(json.loads(files.pop(manifest[0]["Config"])), indent=2).encode()
    hexd = hashlib.sha256(raw).hexdigest()
    files[f"{hexd}.json"] = raw
    manifest[0]["Config"], manifest[0]["RepoTags"] = f"{hexd}.json", [tag]
    files["manifest.json"] = json.dumps(manifest).encode()
    files.pop("repositories", None)
    with tarfile.open(out, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return f"sha256:{hexd}"


def test_load_of_a_pulled_images_archive_keeps_its_registry_manifest(
    tmp_path,
    registry_plain,  # noqa: F811
    busybox_image,
):
    src = busybox_image.store.root
    ref = f"{registry_plain.host}/same-config/bb:{tmp_path.name[-12:]}"
    kiln(src, "push", "--tls-verify=false", "busybox:latest", ref)
    root = tmp_path / "store"
    kiln(root, "pull", "-q", "--tls-verify=false", ref)
    pulled = inspect(root, ref)
    archive = str(tmp_path / "bb.tar")
    kiln(root, "save", "-o", archive, "--format", "docker-archive", ref)
    kiln(root, "tag", ref, "other:1")
    kiln(root, "rmi", ref)  # only the name goes: the image keeps other:1
    kiln(root, "load", "-q", "-i", archive)
    loaded = inspect(root, ref)
    assert loaded["Id"] == pulled["Id"]
    assert loaded["Digest"] == pulled["Digest"]  # the registry's manifest, not the archive's
    repo = ref.rsplit(":", 1)[0]
    assert [d for d in loaded["RepoDigests"] if d.startswith(repo)] == [
        f"{repo}@{pulled['Digest']}"
    ], loaded["RepoDigests"]
    # the same JSON in other bytes: another config digest, another image
    other = str(tmp_path / "re.tar")
    new_id = reencode_config(archive, other, "localhost/re:1")
    kiln(root, "load", "-q", "-i", other)
    assert f"sha256:{inspect(root, 're:1')['Id']}" == new_id != f"sha256:{pulled['Id']}"
    assert inspect(root, ref)["Digest"] == pulled["Digest"]
    assert "no problems found" in kiln(root, "system", "check")
