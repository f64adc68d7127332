"""The buildah reference of the parity and differential suites (``harness.Buildah``): its storage.

overlay where buildah can mount it (vfs copies the whole root file system for every layer
and container); vfs, with buildah's reason given once as a warning, where it cannot (a work
directory on overlayfs, as in a container); the same base image either way, and nothing
left mounted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import pytest

from dockerfile_cases import harness
from mount_points import mount_points_under

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah"),
]


def _fs_type(path) -> str:
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    work = tmp_path_factory.mktemp("bases")
    return harness.make_base_images(str(work / "kiln-root"), str(work))


@pytest.fixture
def on_overlayfs(tmp_path):
    """A directory on an overlayfs mount (where buildah's overlay driver refuses to work)."""
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    opts = (
        f"lowerdir={tmp_path / 'lower'},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"
    )
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tmp_path / "merged")],
                   check=True, capture_output=True)  # fmt: skip
    yield tmp_path / "merged"
    subprocess.run(["umount", "-l", str(tmp_path / "merged")], check=True, capture_output=True)


def _base_listing(b: harness.Buildah, archives) -> dict:
    b.load({harness.BASE: archives[harness.BASE]})
    return b.probe(harness.BASE).files()


def test_overlay_where_it_mounts(tmp_path, archives):
    if _fs_type(tmp_path) == "overlay":
        pytest.skip("the temporary directory is on overlayfs")
    b = harness.Buildah(str(tmp_path / "buildah"))
    try:
        assert b.driver == "overlay"
        files = _base_listing(b, archives)
    finally:
        b.close()
    assert files["/bin/busybox"].type == "file"
    assert mount_points_under(tmp_path) == []


def test_vfs_with_one_warning_where_overlay_cannot_mount(
    tmp_path, archives, on_overlayfs, monkeypatch
):
    monkeypatch.setattr(harness, "_OVERLAY_FAILED", {})
    with pytest.warns(
        UserWarning, match="overlay storage does not work here, using vfs: .*overlay"
    ):
        first = harness.Buildah(str(on_overlayfs / "one"))
    assert first.driver == "vfs"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reason is given once, not per storage
        second = harness.Buildah(str(on_overlayfs / "two"))
    assert second.driver == "vfs"
    vfs_files = _base_listing(first, archives)
    other = harness.Buildah(str(tmp_path / "elsewhere"))
    try:
        assert vfs_files == _base_listing(other, archives)
    finally:
        other.close()
