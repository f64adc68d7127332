"""What a short ``kiln build`` pays before it does anything: importing the modules of the
build and RUN path must not start programs (``ctypes.util.find_library`` runs ``ldconfig
-p``: a fork and exec at every start of a build)."""

from __future__ import annotations

import subprocess
import sys

# the modules a build with a RUN step imports, the RUN runtime's helpers included
BUILD_PATH = [
    "kiln.cli.main",
    "kiln.cli.commands.build",
    "kiln.ops.build",
    "kiln.build.executor",
    "kiln.build.dispatch_run",
    "kiln.runtime",
    "kiln.runtime.runc",
    "kiln.runtime.linux",
    "kiln.runtime.seccomp",
    "kiln.container.builder",
]

_CHILD = """
import sys
started = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
        started.append((event, str(args)[:200]))
sys.addaudithook(hook)
for name in sys.argv[1:]:
    __import__(name)
print(repr(started))
"""


def test_importing_the_build_path_starts_no_program():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *BUILD_PATH],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout
