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


# the scratch space of a config without tmpdir, then what tempfile says, in a child whose
# every file opened is seen (tempfile probes its directory by creating a file in it)
_NAME_CHILD = """
import os, sys
opened = []
sys.addaudithook(lambda event, args: event == "open" and opened.append(str(args[0])))
from kiln.ops.config import Config
name = Config().scratch_dir()
probes = [p for p in opened if os.path.dirname(os.path.abspath(p)) == name]
import tempfile
print(name, tempfile.gettempdir(), len(probes))
"""


def _names_in_child(tmp_path, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    done = subprocess.run([sys.executable, "-c", _NAME_CHILD], env={**base, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return done.stdout.split()


def test_the_systems_temporary_directory_is_named_without_a_probe_file(tmp_path):
    temp, tmp = tmp_path / "temp", tmp_path / "tmp"
    temp.mkdir()
    tmp.mkdir()
    assert _names_in_child(tmp_path, TEMP=str(temp)) == [str(temp), str(temp), "0"]
    # a variable naming no directory is passed over, as tempfile does
    found = _names_in_child(tmp_path, TEMP=str(tmp_path / "missing"), TMP=str(tmp))
    assert found == [str(tmp), str(tmp), "0"]
    found = _names_in_child(tmp_path, TMP="tmp")  # relative: made absolute
    assert found == [str(tmp), str(tmp), "0"]
