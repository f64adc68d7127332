"""The unmount in the teardown the kill tests share (``killed_process.clean_up_after_kills``):
what a test that failed midway left mounted under its tmp_path is unmounted, a busy mount
lazily, and nothing outside its tmp_path is touched."""

from __future__ import annotations

import os
import subprocess

import pytest

from mount_points import mount_points_under, unmount_under

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def _tmpfs(path) -> str:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True,
                   timeout=30)  # fmt: skip
    return str(path)


def test_what_a_failed_test_left_mounted_under_its_tmp_path_is_unmounted(tmp_path):
    mine, beside = tmp_path / "mine", tmp_path / "mine-not"  # a name sharing the prefix
    outside = _tmpfs(beside)
    try:
        left = [_tmpfs(mine / "merged"), _tmpfs(mine / "merged" / "nested"), _tmpfs(mine / "busy")]
        with open(os.path.join(left[2], "held"), "w"):  # open: only a lazy unmount goes
            assert sorted(unmount_under(mine)) == sorted(left)
            assert mount_points_under(mine) == []
        assert mount_points_under(beside) == [outside]
    finally:
        unmount_under(tmp_path)
    assert mount_points_under(tmp_path) == []
