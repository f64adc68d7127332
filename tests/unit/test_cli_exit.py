"""The console script ends without the interpreter's teardown, yet like a normal exit:
exit code kept, output flushed, atexit handlers run."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, sys
from kiln.cli.main import main

class Finalized:
    def __del__(self):
        sys.stdout.write("torn down\\n")

KEEP = Finalized()  # a module global: finalized only by the interpreter's teardown
atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
sys.argv = ["kiln", *sys.argv[1:]]
main()
"""


def _kiln(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60
    )


def test_success_flushes_output_and_runs_atexit_but_skips_teardown():
    res = _kiln("version")
    assert res.returncode == 0
    assert "Version:" in res.stdout and res.stdout.endswith("atexit ran\n")
    assert "torn down" not in res.stdout


def test_a_usage_error_keeps_its_exit_code_and_message():
    res = _kiln("no-such-verb")
    assert res.returncode == 125
    assert "no-such-verb" in res.stderr and res.stdout.endswith("atexit ran\n")


def test_a_caller_passing_argv_gets_control_back():
    code = (
        "from kiln.cli.main import main\n"
        "try:\n    main(['version'])\nexcept SystemExit as exc:\n    print('back', exc.code)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().endswith("back 0")
