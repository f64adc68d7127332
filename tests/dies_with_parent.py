"""Start a test's server so that it dies with the process that started it.

A server a fixture starts (a registry, ``kiln serve``, a private dockerd) is stopped by
the fixture's teardown, which a killed pytest (SIGKILL, a CI job's timeout) never runs:
the server would live on, holding its port, its files and its mounts. ``dies_with_parent``
prefixes an argv so that the command is exec'd with a parent-death signal set (Linux
``prctl(PR_SET_PDEATHSIG, SIGKILL)``): it is killed when the thread that started it goes,
so start it from a thread that lives as long as the server (pytest's main thread does).
The PID stays the command's own (the prefix execs it).

    subprocess.Popen(dies_with_parent(["docker-registry", "serve", config]), ...)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# -I -S: no site, no user paths (fast, and nothing of the test run's path is imported)
_EXEC_WITH_PDEATHSIG = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:\n"  # PR_SET_PDEATHSIG
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed: errno %d' % ctypes.get_errno())\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before the prctl
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def dies_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that it is SIGKILLed when this process (the calling thread) dies."""
    return [sys.executable, "-I", "-S", "-c", _EXEC_WITH_PDEATHSIG, str(os.getpid()), *argv]


def stop_server(proc: subprocess.Popen, grace: float = 30) -> None:
    """Stop a server started so: SIGTERM, then SIGKILL if it is still there after ``grace``
    seconds (bounded either way)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
