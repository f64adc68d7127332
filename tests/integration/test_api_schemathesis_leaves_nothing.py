"""The schemathesis API test writes nothing in $TMPDIR when its module is imported (at
collection, before any fixture): a run killed or deselected after collection used to leave a
``kiln-schemathesis-*`` store there each time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import test_api_schemathesis
    print(sorted(os.listdir(os.environ["TMPDIR"])), flush=True)
    os._exit(0)  # as a killed run: no atexit
""")


def test_importing_the_schemathesis_module_writes_nothing_to_tmpdir(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(HERE), str(HERE.parent)],
                         env=dict(os.environ, TMPDIR=str(scratch)), capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    if "Skipped" in res.stderr:  # the spec is not next to the checkout
        pytest.skip(res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert os.listdir(scratch) == []
