"""Images kiln writes are read by skopeo, umoci and podman; images they write are read by kiln."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import (  # noqa: E402
    busybox_files,
    have,
    save_docker_archive,
    save_oci_archive,
    save_oci_layout,
)
from kiln.image import copy_image, open_store_image, validate_image  # noqa: E402
from kiln.image.transports import open_docker_archive, open_oci_archive  # noqa: E402
from kiln.oci import Digest  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = pytest.mark.root


def _tool(name):
    if not have(name):
        pytest.skip(f"{name} is not installed")


def _skopeo(*args) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _raw(*args) -> bytes:
    proc = subprocess.run(["skopeo", *args], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive"])
def test_skopeo_reads_what_kiln_writes(kind, busybox_image, tmp_path):
    _tool("skopeo")
    if kind == "oci":
        save_oci_layout(busybox_image, str(tmp_path / "layout"), ["latest"])
        ref = f"oci:{tmp_path / 'layout'}:latest"
    elif kind == "oci-archive":
        save_oci_archive(busybox_image, str(tmp_path / "a.tar"))
        ref = f"oci-archive:{tmp_path / 'a.tar'}:busybox:latest"
    else:
        save_docker_archive(busybox_image, str(tmp_path / "d.tar"))
        ref = f"docker-archive:{tmp_path / 'd.tar'}:busybox:latest"
    config = _raw("inspect", "--config", "--raw", ref)
    assert str(Digest.of_bytes(config)) == busybox_image.id  # same config bytes
    info = json.loads(_skopeo("inspect", ref))
    assert info["Layers"] or info.get("LayersData")
    if kind != "docker-archive":
        assert _raw("inspect", "--raw", ref) == busybox_image.manifest.raw
        assert info["Digest"] == str(busybox_image.manifest_digest)
    # skopeo copies it on, and kiln reads skopeo's copy back with the same digests
    out = tmp_path / "skopeo-out.tar"
    _skopeo("copy", "--quiet", ref, f"oci-archive:{out}:again")
    img = open_oci_archive(str(out), "again")
    validate_image(img)
    assert img.config.diff_ids == busybox_image.config.diff_ids
    if kind != "docker-archive":  # skopeo rewrites the config when converting docker -> oci
        assert img.id == busybox_image.id
        assert img.manifest_digest == busybox_image.manifest_digest


def test_umoci_unpacks_kiln_layout(busybox_image, busybox_rootfs_tar, tmp_path):
    _tool("umoci")
    layout = tmp_path / "layout"
    save_oci_layout(busybox_image, str(layout), ["latest"])
    bundle = tmp_path / "bundle"
    proc = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rootfs = bundle / "rootfs"
    for rel, kind in busybox_files().items():
        path = rootfs / rel
        if kind == "symlink":
            assert os.readlink(path) == "/bin/busybox", rel
        elif kind == "dir":
            assert path.is_dir(), rel
    with tarfile.open(busybox_rootfs_tar) as tar:
        for name in ("bin/busybox", "etc/passwd", "etc/group"):
            assert (rootfs / name).read_bytes() == tar.extractfile(name).read()
    assert os.stat(rootfs / "bin/busybox").st_mode & 0o777 == 0o755
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh"]


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_podman_loads_what_kiln_saves(kind, podman, busybox_image, tmp_path):
    path = str(tmp_path / "img.tar")
    name = f"localhost/kiln-{kind}:latest"
    if kind == "docker-archive":
        save_docker_archive(busybox_image, path, [name])
    else:
        save_oci_archive(busybox_image, path, [name])
    podman("load", "-i", path)
    images = json.loads(podman("images", "--format", "json").stdout)
    ids = {i["Id"] for i in images}
    assert busybox_image.id.removeprefix("sha256:") in ids
    info = json.loads(podman("image", "inspect", busybox_image.id.removeprefix("sha256:")).stdout)[
        0
    ]
    assert info["Config"]["Cmd"] == ["/bin/sh"]
    assert info["RootFS"]["Layers"] == list(busybox_image.config.diff_ids)
    out = podman(
        *podman.run_args(), info["Id"], "/bin/sh", "-c", "cat /etc/passwd; readlink /bin/ls"
    )
    assert out.stdout.splitlines() == [
        "root:x:0:0:root:/root:/bin/sh",
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
        "/bin/busybox",
    ]


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_kiln_loads_what_podman_saves(fmt, podman, busybox_image, kiln_store, tmp_path):
    src = str(tmp_path / "in.tar")
    save_docker_archive(busybox_image, src, ["localhost/pbox:latest"])
    podman("load", "-i", src)
    out = str(tmp_path / f"podman-{fmt}.tar")
    podman("save", "--format", fmt, "-o", out, "localhost/pbox:latest")
    podman_id = podman("image", "inspect", "--format", "{{.Id}}", "localhost/pbox:latest").stdout
    if fmt == "docker-archive":
        img = open_docker_archive(out, "localhost/pbox:latest")
        assert img.id == "sha256:" + podman_id.strip()
    else:
        img = open_oci_archive(out, "localhost/pbox:latest")
        raw = _raw("inspect", "--raw", f"oci-archive:{out}:localhost/pbox:latest")
        assert img.manifest.raw == raw
        skopeo_info = json.loads(_skopeo("inspect", f"oci-archive:{out}:localhost/pbox:latest"))
        assert skopeo_info["Digest"] == str(img.manifest_digest)
    validate_image(img)
    rec = copy_image(img, kiln_store, ["pbox:latest"]).record
    assert rec.id == img.id
    if fmt == "oci-archive":
        assert rec.manifest_digest == str(img.manifest_digest)
    loaded = open_store_image(kiln_store, "pbox:latest")
    validate_image(loaded)
    assert loaded.config.diff_ids == busybox_image.config.diff_ids
