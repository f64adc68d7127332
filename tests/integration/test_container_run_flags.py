"""buildah's working-container flags that reach the runtime, end to end with runc: what the
container sees (/etc/hosts, /proc/self/mountinfo, /proc/self/ns) and what the working
container keeps for its later runs, as buildah 1.28 does with the same flags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytest.register_assert_rewrite("fixtures_images")

pytest_plugins = ["fixtures_images"]

RUNC = shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
]
ISOLATIONS = [
    pytest.param("oci", marks=[pytest.mark.runc, pytest.mark.skipif(not RUNC, reason="no runc")]),
    "chroot",
]


@pytest.fixture
def kiln(kiln_store, busybox_image, tmp_path):
    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("BUILDAH_ISOLATION", None)

    def run(*args, check=True):
        res = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", *args], env=env, cwd=tmp_path,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}\n{res.stderr}")
        return res

    yield run
    run("rm", "--all", check=False)


def _mounted_at(mountinfo: str) -> dict[str, str]:
    """{mount point: mount root (the source's path for a bind)} of /proc/self/mountinfo."""
    return {line.split()[4]: line.split()[3] for line in mountinfo.splitlines()}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_run_no_hosts_leaves_the_images_hosts_file(kiln, tmp_path, isolation):
    name = kiln("from", "busybox").stdout.strip()
    show = "cat /etc/hosts || echo none; cat /proc/self/mountinfo >&2"
    res = kiln("run", "--isolation", isolation, "--no-hosts", name, "--", "sh", "-c", show)
    # the image has none, so the container has none: no kiln file, no empty mountpoint
    assert res.stdout == "none\n"
    mounts = _mounted_at(res.stderr)
    assert "/etc/hosts" not in mounts and "/etc/resolv.conf" in mounts
    assert kiln("diff", name).stdout == ""

    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.8.7\timagehost\n")
    kiln("copy", name, str(hosts), "/etc/hosts")
    res = kiln("run", "--isolation", isolation, "--no-hosts", name, "--", "cat", "/etc/hosts")
    assert res.stdout == "10.9.8.7\timagehost\n"
    res = kiln("run", "--isolation", isolation, name, "--", "cat", "/etc/hosts")
    assert "imagehost" not in res.stdout and "localhost" in res.stdout  # kiln's, as before

    res = kiln("run", "--no-hosts", "--add-host", "a:10.0.0.1", name, "true", check=False)
    assert (res.returncode, res.stderr) == (
        125, "Error: --no-hosts and --add-host conflict: /etc/hosts is the image's\n"
    )  # fmt: skip
