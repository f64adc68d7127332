"""Where a command's scratch space is, and what finding it costs: the system's temporary
directory is looked up only when a command needs it (``tempfile.gettempdir`` creates and
removes a probe file there the first time), at the same place as before."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from kiln.ops.config import Config

# `kiln images` in a child with neither TMPDIR nor KILN_TMPDIR; then whether the temporary
# directory was ever looked up (tempfile caches it in ``tempfile.tempdir`` when it is)
_CHILD = """
import sys, tempfile
from kiln.cli.main import main
try:
    main(["--root", sys.argv[1], "images"])
except SystemExit as exc:
    assert not exc.code, exc.code
print("looked up:", tempfile.tempdir, file=sys.stderr)
"""


def test_a_command_that_only_reads_the_store_does_not_probe_the_temp_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "KILN_TMPDIR")}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "root")], env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert done.stderr.strip().splitlines()[-1] == "looked up: None", done.stderr


def test_the_scratch_space_is_still_the_environments_or_the_systems(tmp_path):
    assert Config.from_env({}).scratch_dir() == tempfile.gettempdir()
    assert Config.from_env({"TMPDIR": str(tmp_path)}).scratch_dir() == str(tmp_path)
    assert Config.from_env({"TMPDIR": "/x", "KILN_TMPDIR": str(tmp_path)}).scratch_dir() == str(
        tmp_path
    )
    assert Config.from_env({}, tmpdir=str(tmp_path)).scratch_dir() == str(tmp_path)
