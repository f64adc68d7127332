"""A pytest run killed mid-test may leave a file system mounted in its ``--basetemp``; the
next run with the same ``--basetemp`` still runs (tests/conftest.py unmounts it first)
instead of failing every test on a directory it cannot empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

TESTS = Path(__file__).resolve().parents[1]


def test_the_next_run_unmounts_what_a_killed_one_left_in_its_basetemp(tmp_path):
    basetemp = tmp_path / "basetemp"
    left = basetemp / "test_killed0" / "merged"
    left.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "kiln-test", str(left)], check=True, timeout=30)
    try:
        (left / "f").write_text("in the left mount\\n")
        (tmp_path / "test_inner.py").write_text("def test_uses_tmp_path(tmp_path):\n    pass\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-p", "conftest", "-c", os.devnull, "--rootdir", str(tmp_path),
                              "--basetemp", str(basetemp), str(tmp_path / "test_inner.py")],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert not os.path.ismount(left)
    finally:
        if os.path.ismount(left):
            subprocess.run(["umount", str(left)], check=False, timeout=30)
