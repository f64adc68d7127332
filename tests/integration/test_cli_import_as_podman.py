"""kiln import on the CLI makes the image ``podman import`` makes from the same tarball:
the same config (no environment: podman 4.3 sets none, nor does dockerd) and the same
history entry, with and without a message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

pytest_plugins = ["fixtures_images"]

KILN = shutil.which("kiln")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed"),
]


def _shape(inspected: dict) -> dict:
    """What an import decides, without the times and IDs."""
    history = [{k: v for k, v in h.items() if k != "created"} for h in inspected["History"]]
    return {"Config": inspected["Config"], "History": history}


@pytest.mark.parametrize("message", [[], ["-m", "from the nightly export"]])
def test_cli_import_config_and_history_are_podmans(tmp_path, busybox_rootfs_tar, podman, message):
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "root"))

    def kiln(*args: str) -> str:
        res = subprocess.run(
            [KILN, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    name = f"imported-{len(message)}:1"
    kiln("import", "-q", *message, busybox_rootfs_tar, name)
    podman("import", "-q", *message, busybox_rootfs_tar, name)
    [ours] = json.loads(kiln("inspect", name))
    [theirs] = json.loads(podman("inspect", name).stdout)
    assert "Env" not in ours["Config"]
    assert _shape(ours) == _shape(theirs)
