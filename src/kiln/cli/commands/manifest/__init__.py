"""kiln manifest: manifest lists and image indexes, as `podman manifest` handles them.

Sub-commands are this package's modules (``create.py`` -> ``kiln manifest create``).
"""

from __future__ import annotations

from kiln.cli.lazy import LazyGroup

command = LazyGroup(
    "manifest",
    package=__name__,
    short_help="Manipulate manifest lists and image indexes",
    help="Create, edit, inspect, push and remove manifest lists and image indexes.",
)
