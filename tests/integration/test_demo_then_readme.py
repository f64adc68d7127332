"""`scripts/demo`, then the README's first build command, as a new user runs them.

The default store of root (/var/lib/kiln) is made private to the test: both run in
their own mount namespace with a tmpfs over /var/lib.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("kiln") is None, reason="the kiln command is not installed"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


def test_readme_build_works_after_the_demo():
    script = (
        "set -e; mount -t tmpfs tmpfs /var/lib; "
        "./scripts/demo >/dev/null; "
        "kiln build -q -t hello examples/hello; "
        "c=$(kiln from hello); kiln run $c -- cat /usr/share/hello/message"
    )
    env = {k: v for k, v in os.environ.items() if k != "KILN_ROOT"}
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "> built by kiln on" in proc.stdout
