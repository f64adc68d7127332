"""The kiln CLI as a subprocess on a test's own store, for tests that start, kill or starve
real kiln processes.

    kiln = kiln_runner(dict(os.environ, KILN_ROOT=str(tmp_path / "root")), timeout=120)
    kiln("import", rootfs, "busybox")             # asserts exit 0, stderr as the message
    proc = kiln("build", str(ctx), check=False)   # the CompletedProcess, text
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def kiln_runner(
    environ: dict[str, str], *, timeout: float
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``kiln(*args, check=True)``: ``python -m kiln.cli.main *args`` (this interpreter and
    the kiln it imports) with ``environ`` as it is at the call, output captured as text,
    killed after ``timeout`` seconds; with ``check`` it must exit 0."""

    def kiln(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=environ,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return kiln


def registry_free_environ(tmp_path: Path) -> dict[str, str]:
    """This environment with the store, ``$HOME`` and ``$XDG_RUNTIME_DIR`` (where an auth
    file goes) under ``tmp_path``, and no other auth file or config the user has."""
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"), HOME=str(tmp_path))
    env["KILN_ROOT"] = str(tmp_path / "root")
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "KILN_DEBUG"):
        env.pop(var, None)
    return env
