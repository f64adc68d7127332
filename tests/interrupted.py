"""Run a kiln command and signal it once it has reached a point the test waits for (a
server's event: the layer is coming, the upload has begun): no sleep decides when."""

from __future__ import annotations

import signal
import subprocess
import threading


def signal_when(
    argv: list[str], reached: threading.Event, what: str, sig: int = signal.SIGINT
) -> subprocess.CompletedProcess:
    """Start ``argv``, send ``sig`` (Ctrl-C's by default) once ``reached`` is set, and
    return how it ended (killed if it is still there after 120 s, so the test ends)."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reached.wait(120), f"{what} never happened"
        child.send_signal(sig)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(argv, child.returncode, out, err)
