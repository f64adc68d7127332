"""``kiln.ops.registry`` loads no HTTP stack at import, as its docstring promises: a push
to ``oci:``, a build's local ``FROM`` and the commands that reach it through
``kiln.ops.transfer`` pay for httpx only when they talk to a registry."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["kiln.ops.registry", "kiln.ops.transfer"])
def test_importing_the_registry_use_cases_loads_no_httpx(module):
    code = (
        f"import sys, {module}\n"
        "print(sorted(n for n in ('httpx', 'httpcore', 'ssl') if n in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]", f"{module} loaded {out.strip()}"


def test_a_registry_use_case_still_finds_its_client():
    code = (
        "import sys\n"
        "from kiln.ops import registry\n"
        "from kiln.registry import RegistryOptions\n"
        "with registry.registry_client(None, RegistryOptions()) as client:\n"
        "    print(type(client).__name__, 'httpx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split() == ["RegistryClient", "True"]
