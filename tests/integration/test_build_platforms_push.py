"""Issue 12's multi-platform done-when, end to end with real tools: a two-platform image
(linux/amd64 + linux/arm64, a RUN in each, the arm64 one under QEMU) built by the kiln
CLI into a manifest list, pushed to a local docker-registry; skopeo sees both manifests,
and podman pulls the arm64 image and runs it (under QEMU): ``uname -m`` says aarch64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fixtures_images import have
from kiln.runtime.binfmt import host_arch
from registry_env import isolate_registry_env

pytest_plugins = ["fixtures_images", "foreign_images"]
pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(host_arch() != "amd64", reason="the foreign platform here is arm64"),
    pytest.mark.skipif(
        not os.path.exists("/usr/bin/qemu-aarch64-static"), reason="needs qemu-user-static"
    ),
    pytest.mark.skipif(not have("skopeo"), reason="needs skopeo"),
]
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


@pytest.fixture
def kiln(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    root = str(tmp_path / "kiln-root")
    env = {**os.environ, "PYTHONPATH": SRC}

    def call(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", "--root", root, *args],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, f"kiln {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    return call


def test_two_platform_list_pushed_and_pulled_by_podman_for_arm64(
    kiln,
    tmp_path,
    registry_plain,
    podman,
    busybox_rootfs_tar,
    busybox_arm64_rootfs_tar,
):
    kiln("import", "-q", "--platform", "linux/amd64", busybox_rootfs_tar, "bb-amd64")
    kiln("import", "-q", "--platform", "linux/arm64", busybox_arm64_rootfs_tar, "bb-arm64")
    kiln("manifest", "create", "base", "bb-amd64", "bb-arm64")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        "FROM base\nARG TARGETPLATFORM\nRUN echo $TARGETPLATFORM $(uname -m) > /built\n"
    )
    out = kiln("build", "--platform", "linux/amd64,linux/arm64", "--manifest", "multi", str(ctx))
    assert "[linux/arm64] STEP 3/3: RUN echo" in out
    ref = f"{registry_plain.host}/multi:1"
    kiln("manifest", "push", "--all", "--tls-verify=false", "multi", f"docker://{ref}")

    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    index = json.loads(raw)
    platforms = sorted(
        (m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]
    )
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]

    podman("pull", "--tls-verify=false", "--platform", "linux/arm64", ref)
    arch = podman("image", "inspect", "--format", "{{.Architecture}}", ref).stdout.strip()
    assert arch == "arm64"
    run = podman(*podman.run_args(), ref, "sh", "-c", "uname -m; cat /built")
    assert run.stdout.split("\n")[:2] == ["aarch64", "linux/arm64 aarch64"]
