"""The registry and pull vocabulary front ends hand to the use cases, loaded alone.

``RegistryOptions`` (``kiln.registry.options``) and ``PullRequest``
(``kiln.registry.pull_request``) are plain values that load no httpx. The command line
takes them from here rather than from ``kiln.ops.options``, which also loads the
runtime's ``RunSettings`` (start-up: ``kiln pull`` and the registry flags need only
these), and rather than from ``kiln.registry`` itself (the CLI never imports a layer
below ops).
"""

from __future__ import annotations

from kiln.registry.options import RegistryOptions, retry_values
from kiln.registry.pull_request import PullRequest, platform_choice

__all__ = ["PullRequest", "RegistryOptions", "platform_choice", "retry_values"]
