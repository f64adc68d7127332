"""Interop on one real registry: what kiln pushes, skopeo and podman read with the same
digests; what skopeo and podman push, kiln pulls with the same digests."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import save_oci_layout  # noqa: E402
from kiln.image import open_store_image, validate_image  # noqa: E402
from kiln.ops import registry as ops  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.ops.options import PullRequest  # noqa: E402
from kiln.registry import RegistryOptions  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    isolate_registry_env(tmp_path, monkeypatch)


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_skopeo_and_podman_read_what_kiln_pushes(fmt, registry_plain, busybox_image, podman):
    ref = f"{registry_plain.host}/interop/kiln-{fmt}:1"
    with open_context(busybox_image.store.root) as ctx:
        res = ops.push(
            ctx,
            "busybox:latest",
            f"docker://{ref}",
            format=fmt,
            options=RegistryOptions(tls_verify=False),
        )
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == res.manifest_digest
    assert json.loads(raw)["config"]["digest"] == busybox_image.id
    podman("pull", "--tls-verify=false", ref)
    out = podman("image", "inspect", ref).stdout
    inspected = json.loads(out)[0]
    assert inspected["Id"] == busybox_image.id.removeprefix("sha256:")
    name = ref.rsplit(":", 1)[0]
    assert f"{name}@{res.manifest_digest}" in inspected["RepoDigests"]  # same digest in podman
    assert podman(*podman.run_args(), ref, "/bin/busybox", "echo", "ran").stdout.strip() == "ran"


def test_kiln_pulls_what_skopeo_pushes(registry_basic, busybox_image, tmp_path):
    layout = tmp_path / "layout"
    save_oci_layout(busybox_image, str(layout), ["v1"])
    ref = f"{registry_basic.host}/interop/skopeo:1"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        registry_basic.creds,
        f"oci:{layout}:v1",
        f"docker://{ref}",
    )
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", "--creds", registry_basic.creds, f"docker://{ref}")
    )
    with open_context(str(tmp_path / "root")) as ctx:
        options = RegistryOptions(tls_verify=False, creds=registry_basic.creds)
        res = ops.pull(ctx, PullRequest.of(ref, options=options))
        assert res.manifest_digest == info["Digest"]
        img = open_store_image(ctx.store, ref)
        assert img.id == busybox_image.id
        validate_image(img)


def test_kiln_pulls_what_podman_pushes(registry_plain, podman, busybox_image, tmp_path):
    from fixtures_images import save_oci_archive

    archive = tmp_path / "bb.tar"
    save_oci_archive(busybox_image, str(archive), ["busybox:latest"])
    podman("load", "-i", str(archive))
    ref = f"{registry_plain.host}/interop/podman:1"
    podman("tag", "busybox:latest", ref)
    digestfile = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digestfile), ref)
    with open_context(str(tmp_path / "root")) as ctx:
        res = ops.pull(ctx, PullRequest.of(ref, options=RegistryOptions(tls_verify=False)))
        assert res.manifest_digest == digestfile.read_text().strip()
        img = open_store_image(ctx.store, ref)
        assert img.id == busybox_image.id
        validate_image(img)
