"""A Ctrl-C or SIGTERM that Python turns into another error on its way out still ends the
command as stopped by it: on Python 3.11 an interrupt landing in a class's ``__set_name__``
(kiln's lazy dataclasses have one per field) comes out as a RuntimeError, and ``kiln system
prune`` stopped there said "unexpected RuntimeError" and exited 125 (found by the interrupt
fuzzer; an import a C module makes, turned into an ImportError, is the same case)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import kiln

# the console script's handlers, then a command whose class creation is interrupted
SCRIPT = r"""
import signal, sys
from kiln.cli import main as cli_main

sig = getattr(signal, sys.argv[1])
cli_main._stop_on_sigterm()

def command():
    class Interrupting:
        def __set_name__(self, owner, name):
            signal.raise_signal(sig)

    class Record:
        field = Interrupting()

sys.exit(cli_main.guarded(command, []))
"""


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [("SIGINT", 130, "Error: interrupted"), ("SIGTERM", 143, "Error: stopped by SIGTERM")],
)
def test_an_interrupt_python_wrapped_in_another_error_still_stops_the_command(sig, code, line):
    src = os.path.dirname(os.path.dirname(kiln.__file__))
    done = subprocess.run([sys.executable, "-c", SCRIPT, sig], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=src), timeout=120)  # fmt: skip
    assert (done.returncode, done.stderr.strip().splitlines()[-1:]) == (code, [line])
    assert "Traceback" not in done.stderr
