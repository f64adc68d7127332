"""`pip install` of kiln into a clean virtual environment gives a working `kiln` command.

The venv has no system site packages: kiln's own dependencies (click and rich for the
command line included) must come with it. The source is copied first so that building
the wheel leaves nothing in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KILN_ROOT")}
    return subprocess.run(list(args), env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)  # fmt: skip


def test_pip_install_gives_kiln_help_and_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    shutil.copytree(os.path.join(REPO, "src"), src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    venv = tmp_path / "venv"
    proc = run(sys.executable, "-m", "venv", str(venv))
    assert proc.returncode == 0, proc.stderr
    pip = run(str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
              str(src), timeout=600)  # fmt: skip
    assert pip.returncode == 0, pip.stdout + pip.stderr
    kiln = str(venv / "bin" / "kiln")

    proc = run(kiln, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: kiln [OPTIONS] COMMAND [ARGS]...")
    assert "  build " in proc.stdout

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    root = str(tmp_path / "root")
    proc = run(kiln, "--root", root, "build", "-t", "tiny", str(ctx), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Successfully tagged localhost/tiny:latest" in proc.stdout
    proc = run(kiln, "--root", root, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert proc.stdout.splitlines() == ["localhost/tiny:latest"]

    # the library still does not import the command line's dependencies
    code = "import sys, kiln; print([m for m in ('click', 'rich') if m in sys.modules])"
    proc = run(str(venv / "bin" / "python"), "-c", code)
    assert proc.stdout.strip() == "[]", proc.stderr

    # its type hints come with it (PEP 561: py.typed), for its users' type checkers
    code = "import importlib.resources as r; print(r.files('kiln').joinpath('py.typed').is_file())"
    proc = run(str(venv / "bin" / "python"), "-c", code)
    assert proc.stdout.strip() == "True", proc.stderr
