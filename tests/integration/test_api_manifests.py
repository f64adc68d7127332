"""``podman --remote`` manifest verbs against ``kiln serve`` (the /libpod/manifests routes):
create, add with a platform override and an annotation, inspect, exists, remove, push --all
to a real registry (read back with skopeo), and rm."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from api_server import busybox_sh_tar, start_server, stop_server  # noqa: E402

PODMAN = shutil.which("podman")
pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(300),
    pytest.mark.skipif(PODMAN is None or shutil.which("skopeo") is None, reason="podman, skopeo"),
]


@pytest.fixture
def podman(tmp_path):
    proc, sock = start_server(tmp_path)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [PODMAN, "--remote", "--url", f"unix://{sock}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.stderr}")
        return r

    yield run
    assert stop_server(proc) == 0


def test_podman_remote_manifest_verbs(podman, registry_plain, tmp_path):
    (tmp_path / "rootfs.tar").write_bytes(busybox_sh_tar())
    podman("import", str(tmp_path / "rootfs.tar"), "base:1")
    list_id = podman("manifest", "create", "ml", "base:1").stdout.strip()
    assert len(list_id) == 64
    podman("manifest", "add", "--arch", "arm64", "--annotation", "a=b", "ml", "base:1")
    doc = json.loads(podman("manifest", "inspect", "ml").stdout)
    [entry] = doc["manifests"]  # the same image again: updated, not added twice
    assert entry["platform"]["architecture"] == "arm64"
    # (podman 4.3's remote inspect decodes into a Docker list type, which has no annotations)
    assert podman("manifest", "exists", "ml", check=False).returncode == 0
    assert podman("manifest", "exists", "nothere", check=False).returncode == 1
    ref = f"{registry_plain.host}/remote/ml:1"
    podman("manifest", "push", "--all", "--tls-verify=false", "ml", f"docker://{ref}")
    pushed = json.loads(skopeo_raw(ref))
    assert [m["digest"] for m in pushed["manifests"]] == [entry["digest"]]
    assert pushed["manifests"][0]["annotations"] == {"a": "b"}
    podman("manifest", "remove", "ml", entry["digest"])
    assert json.loads(podman("manifest", "inspect", "ml").stdout)["manifests"] == []
    out = podman("manifest", "rm", "ml").stdout
    assert "localhost/ml:latest" in out
    assert podman("manifest", "exists", "ml", check=False).returncode == 1


def test_podman_remote_manifest_rm_removes_lists_never_images(podman, tmp_path):
    """``podman manifest rm`` sends lookupManifest: an image's name is refused, not removed,
    and a list goes without the images it holds."""
    (tmp_path / "rootfs.tar").write_bytes(busybox_sh_tar())
    podman("import", str(tmp_path / "rootfs.tar"), "base:1")
    podman("manifest", "create", "ml", "base:1")
    r = podman("manifest", "rm", "base:1", check=False)
    assert r.returncode != 0 and "not a manifest list" in r.stderr
    assert podman("image", "exists", "base:1", check=False).returncode == 0
    r = podman("manifest", "rm", "nosuch:1", check=False)
    assert r.returncode != 0 and "image not known" in r.stderr
    podman("manifest", "rm", "ml")
    assert podman("manifest", "exists", "ml", check=False).returncode == 1
    assert podman("image", "exists", "base:1", check=False).returncode == 0


def skopeo_raw(ref: str) -> str:
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
