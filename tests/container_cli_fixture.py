"""The ``kiln`` fixture of the working-container CLI tests: runs ``kiln ARGS`` on a store
that has the busybox image, in the test's directory (``environ=`` adds variables to one
call), and removes every working container after the test; ``ISOLATIONS`` parametrizes a
test over runc and chroot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

RUNC = shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin")
ISOLATIONS = [
    pytest.param("oci", marks=[pytest.mark.runc, pytest.mark.skipif(not RUNC, reason="no runc")]),
    "chroot",
]


@pytest.fixture
def kiln(kiln_store, busybox_image, tmp_path):
    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("BUILDAH_ISOLATION", None)
    env.pop("BUILDAH_HISTORY", None)

    def run(*args, check=True, cwd=None, environ=None):
        res = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", *args], env={**env, **(environ or {})},
            cwd=cwd or tmp_path,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}\n{res.stderr}")
        return res

    yield run
    run("rm", "--all", check=False)
