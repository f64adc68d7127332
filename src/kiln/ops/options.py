"""The typed option values front ends hand to the use cases.

They are defined where the layers below ops need them (``RunSettings`` in
``kiln.runtime.options``, ``RegistryOptions`` in ``kiln.registry.options``); the CLI and
the API take them from here, so they never import those layers themselves.
"""

from __future__ import annotations

from kiln.registry.options import RegistryOptions
from kiln.runtime.options import RunSettings, parse_memory

__all__ = ["RegistryOptions", "RunSettings", "parse_memory"]
