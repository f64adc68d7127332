"""The kiln CLI as a subprocess on a test's own store, for tests that start, kill or starve
real kiln processes.

    kiln = kiln_runner(dict(os.environ, KILN_ROOT=str(tmp_path / "root")), timeout=120)
    kiln("import", rootfs, "busybox")             # asserts exit 0, stderr as the message
    proc = kiln("build", str(ctx), check=False)   # the CompletedProcess, text
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable


def kiln_runner(
    environ: dict[str, str], *, timeout: float
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kiln(*args, check=True)``: ``python -m kiln.cli.main *args`` (this interpreter and
    the kiln it imports) with ``environ`` as it is at the call, output captured as text,
    killed after ``timeout`` seconds; with ``check`` it must exit 0."""

    def kiln(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=environ,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return kiln
