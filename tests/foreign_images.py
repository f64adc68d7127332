"""A busybox root filesystem of another architecture (arm64), for builds under QEMU.

No internet but apt: the arm64 binary comes from Debian's ``busybox-static:arm64``
package (``apt-get download``, no install), cached in ``$XDG_CACHE_HOME/kiln-tests``
(``~/.cache/kiln-tests``) where ``scripts/setup`` also puts it. Apt must know the arm64
architecture (``dpkg --add-architecture arm64 && apt-get update``, which scripts/setup
does); if it does not, or apt cannot be reached, the fixture skips saying so.

    pytest_plugins = ["fixtures_images", "foreign_images"]

* ``busybox_arm64_rootfs_tar`` (session): the tar ``make_busybox_rootfs`` makes, with
  the arm64 busybox in it.
* ``arm64_deb_cache()``: the cache directory.
"""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

from fixtures_images import make_busybox_rootfs

PACKAGE = "busybox-static:arm64"


def arm64_deb_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kiln-tests")


def _cached_deb(cache: str) -> str | None:
    found = sorted(glob.glob(os.path.join(cache, "busybox-static_*_arm64.deb")))
    return found[-1] if found else None


def _download(cache: str) -> str:
    arches = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    if "arm64" not in arches:
        pytest.skip(
            "apt does not know the arm64 architecture: run scripts/setup "
            "(dpkg --add-architecture arm64 && apt-get update)"
        )
    os.makedirs(cache, exist_ok=True)
    try:
        proc = subprocess.run(
            ["apt-get", "download", "-q", PACKAGE],
            cwd=cache, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip(f"apt-get download {PACKAGE} timed out: is apt reachable?")
    deb = _cached_deb(cache)
    if proc.returncode != 0 or deb is None:
        pytest.skip(f"apt-get download {PACKAGE} failed (apt unreachable?): {proc.stderr[-300:]}")
    return deb


@pytest.fixture(scope="session")
def busybox_arm64_rootfs_tar(tmp_path_factory) -> str:
    cache = arm64_deb_cache()
    deb = _cached_deb(cache) or _download(cache)
    work = tmp_path_factory.mktemp("busybox-arm64")
    unpacked = work / "deb"
    subprocess.run(["dpkg-deb", "-x", deb, str(unpacked)], check=True, timeout=60)
    binary = unpacked / "bin" / "busybox"
    with open(binary, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and head[18:20] == b"\xb7\x00", f"{deb} is not arm64 ELF"
    return make_busybox_rootfs(str(work / "rootfs.tar"), str(binary))
