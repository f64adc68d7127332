"""kiln from keeps its RUN flags with the working container, as buildah does: kiln run
uses them, and its own flags win over them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest_plugins = ["fixtures_images"]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
]


@pytest.fixture
def kiln(kiln_store, busybox_image, tmp_path):
    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("BUILDAH_ISOLATION", None)

    def run(*args, check=True):
        res = subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=env,
                             cwd=tmp_path, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}\n{res.stderr}")
        return res

    yield run
    run("rm", "--all", check=False)


def test_run_uses_the_settings_from_was_given_and_its_own_flags_win(kiln):
    name = kiln("from", "--isolation", "chroot", "--network", "none", "--dns", "10.9.8.7",
                "--add-host", "db:10.1.2.3", "--ulimit", "nofile=100:100", "busybox")  # fmt: skip
    name = name.stdout.strip()
    # -w: the random hostname in /etc/hosts may hold "db" too
    script = "grep nameserver /etc/resolv.conf; grep -cw db /etc/hosts; ulimit -n"
    res = kiln("run", name, "--", "sh", "-c", script)
    assert res.stdout.splitlines() == ["nameserver 10.9.8.7", "1", "100"]
    res = kiln("run", "--dns", "10.0.0.1", "--ulimit", "nofile=200:200", name, "--", "sh", "-c",
               script)  # fmt: skip
    assert res.stdout.splitlines() == ["nameserver 10.0.0.1", "1", "200"]


def test_a_container_made_without_run_flags_runs_with_the_defaults(kiln):
    name = kiln("from", "busybox").stdout.strip()
    res = kiln("run", "--isolation", "chroot", name, "--", "sh", "-c", "ulimit -n")
    assert res.stdout.strip() != "100"


def test_from_refuses_a_bad_run_flag_before_making_a_container(kiln):
    res = kiln("from", "--ulimit", "bogus=1", "busybox", check=False)
    assert res.returncode != 0 and "--ulimit 'bogus=1'" in res.stderr
    assert kiln("containers", "-q").stdout.strip() == ""
