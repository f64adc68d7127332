"""kiln builds kiln: the repository's Containerfile makes kiln's own image, and that image
builds a Containerfile as its non-root user, inside a container that has a user namespace.

There is no Docker Hub here: the base (``ARG BASE``) is a Debian bookworm made with
``debootstrap --variant=minbase`` from the apt mirror, with python3 and venv, as
``python:3.11-slim-bookworm`` would give. RUN steps reach apt and PyPI as a real build
does; pip is given this machine's CA bundle (``--volume`` + ``--build-arg PIP_CERT``) for
a TLS-inspecting proxy.

What works here, with podman (root, runc) as the outer runtime: a user namespace for the
container (``--uidmap``/``--gidmap``; ``--userns=auto`` needs a "containers" range this
machine does not have), ``--cap-add SYS_ADMIN`` (in that namespace only: newuidmap opens
``uid_map`` as the container's root and needs it there) and ``--security-opt unmask=ALL``
(a RUN mounts its own /proc, which the kernel refuses while parts of /proc are masked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_images"]
from fixtures_images import make_busybox_rootfs  # noqa: E402
from rootless_user import APP_UID, CONTAINERFILE, free_subid_base, layer_members  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _kiln(root: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "--root", root, *args],
        capture_output=True, text=True, timeout=timeout, check=False, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, f"kiln {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _debian_base(workdir: Path) -> str:
    """A bookworm minbase rootfs with python3 and venv, as a tar (skips if the mirror fails)."""
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    rootfs = workdir / "rootfs"
    # a private mount namespace: debootstrap's /proc and /sys mounts end with it
    cmd = ["unshare", "-m", "--propagation", "private", "debootstrap", "--variant=minbase",
           "--include=python3,python3-venv", "bookworm", str(rootfs)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("debootstrap did not finish in 15 minutes (apt mirror too slow)")
    if proc.returncode != 0:
        pytest.skip(f"debootstrap failed (apt mirror unreachable?): {proc.stderr[-500:]}")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    tar = workdir / "base.tar"
    subprocess.run(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."],
        check=True, timeout=300,
    )  # fmt: skip
    shutil.rmtree(rootfs, ignore_errors=True)
    return str(tar)


def test_kiln_image_built_by_kiln_builds_as_its_non_root_user(tmp_path, podman):
    root = str(tmp_path / "store")
    base_tar = _debian_base(tmp_path)
    _kiln(root, "import", base_tar, "debian-python:bookworm")
    os.unlink(base_tar)

    pip_args = []
    if os.path.exists(CA_BUNDLE):
        pip_args = ["--volume", f"{CA_BUNDLE}:/run/host-ca.crt:ro",
                    "--build-arg", "PIP_CERT=/run/host-ca.crt"]  # fmt: skip
    if os.environ.get("PIP_INDEX_URL"):
        pip_args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    _kiln(root, "build", "--build-arg", "BASE=localhost/debian-python:bookworm", *pip_args,
          "-t", "kiln:self", str(REPO))  # fmt: skip
    image = str(tmp_path / "kiln.tar")
    _kiln(root, "save", "-o", image, "kiln:self")
    podman("load", "-i", image)
    os.unlink(image)

    # what the image builds: the rootless test's Containerfile on a busybox base
    work = tmp_path / "work"
    work.mkdir()
    (work / "Containerfile").write_text(CONTAINERFILE)
    (work / "hello.txt").write_text("hello\n")
    make_busybox_rootfs(str(work / "busybox.tar"))
    (work / "build.sh").write_text(
        "set -e\n"
        "id -u\n"
        "kiln import /job/busybox.tar busybox:latest >/dev/null\n"
        "kiln build -t inner:1 /job\n"
        "kiln build --isolation chroot --no-cache -q -t inner:2 /job\n"
        "kiln info --format '{{.Store.GraphRoot}}'\n"
        "kiln save -o /out/inner.tar inner:1\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    for p in work.iterdir():
        os.chmod(p, 0o644)
    ids = f"0:{free_subid_base()}:65536"
    proc = podman(
        *podman.run_args(), "--uidmap", ids, "--gidmap", ids,
        "--cap-add", "SYS_ADMIN", "--security-opt", "unmask=ALL",
        "-v", f"{work}:/job:ro", "-v", f"{out}:/out",
        "--entrypoint", "sh", "localhost/kiln:self", "/job/build.sh",
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0] == "1000"  # the image's user, not root
    assert str(APP_UID) in lines  # the inner RUN as USER app
    assert "/home/build/.local/share/kiln" in lines
    members = layer_members(str(out / "inner.tar"))
    assert (members["data/user.txt"].uid, members["data"].uid) == (APP_UID, APP_UID)
    assert members["root-owned.txt"].uid == 0
    with tarfile.open(out / "inner.tar") as t:
        assert "manifest.json" in t.getnames()
