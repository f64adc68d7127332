"""The typed option values front ends hand to the use cases.

They are defined where the layers below ops need them (``RunSettings`` in
``kiln.runtime.options``, ``RegistryOptions`` in ``kiln.registry.options`` with the
``Credential`` it may carry, a pull's ``PullRequest`` in ``kiln.registry.pull_request``);
the CLI and the API take them from here, so they never import those layers themselves.
``kiln.ops.pull_options`` holds the registry and pull values alone, for front ends that
must not load the runtime's.
"""

from __future__ import annotations

from kiln.ops.pull_options import PullRequest, RegistryOptions
from kiln.registry.credential import Credential
from kiln.runtime.options import MIN_MEMORY, RunSettings, parse_memory

__all__ = [
    "MIN_MEMORY",
    "Credential",
    "PullRequest",
    "RegistryOptions",
    "RunSettings",
    "parse_memory",
]
