"""What ``kiln serve`` imports before it answers ``/_ping``: the API's routes and the image
store, not the build engine, the transports or the registry client. Those are most of
kiln's modules; the routes that run them import them on their worker threads, with the
first request that needs them (a server that only answers inspects never does)."""

from __future__ import annotations

import subprocess
import sys

# packages a server needs only for builds, pulls, pushes, saves, loads and checks
NOT_AT_START = (
    "kiln.build",
    "kiln.container",
    "kiln.transports",
    "kiln.snapshot",
    "kiln.archive",
    "kiln.image",
    "kiln.registry.client",
    "httpx",
    "dockerfile",
)

_CHILD = """
import sys
import kiln.api.server
print("\\n".join(sorted(sys.modules)))
"""


def test_serving_imports_no_build_transport_or_registry_module():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = done.stdout.split()
    assert "kiln.api.app" in loaded  # the child did import the server
    early = [m for m in loaded if m.startswith(NOT_AT_START)]
    assert not early, f"kiln serve imports at start: {early}"
