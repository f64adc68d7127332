"""Whichever registry module loads first, httpx loads without its CLI and without trio.

``import httpx`` also imports its command-line tool (rich, pygments, click), and httpcore
imports trio whenever it is installed: together ~160 modules and ~85 ms of CPU on every
``kiln pull``/``push``/``login``. A registry module imported directly (not through the
package's lazy attributes) once loaded all of it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

MODULES = [
    "kiln.registry.http_errors", "kiln.registry.client", "kiln.registry.auth",
    "kiln.registry.connection", "kiln.registry.uploads", "kiln.registry.blob_reader",
    "kiln.registry.retry", "kiln.registry.header_deadline", "kiln.image.registry_source",
    "kiln.image.registry_sink", "kiln.ops.registry",
]  # fmt: skip
HEAVY = ("httpx._main", "trio", "rich", "pygments")


@pytest.mark.parametrize("module", MODULES)
def test_a_registry_module_imported_first_loads_httpx_lean(module):
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()  # fmt: skip
    installed = [m for m in ("trio", "rich") if importlib.util.find_spec(m) is not None]
    if not installed:
        pytest.skip("neither trio nor rich is installed: nothing to keep out")
    assert out == "", f"importing {module} first loaded {out}"


def test_a_registry_use_case_makes_its_client_without_the_heavy_modules():
    """The way a pull, push or login reaches the client (the path that regressed)."""
    if not any(importlib.util.find_spec(m) is not None for m in ("trio", "rich")):
        pytest.skip("neither trio nor rich is installed: nothing to keep out")
    code = (
        "import sys\n"
        "from kiln.ops import registry\n"
        "from kiln.registry import RegistryOptions\n"
        "with registry.registry_client(None, RegistryOptions()) as client:\n"
        f"    print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()  # fmt: skip
    assert out == "", f"making a registry client loaded {out}"
