"""kiln builder: build cache verbs, as `podman builder` groups them (``prune``)."""

from __future__ import annotations

from kiln.cli.lazy import LazyGroup

command = LazyGroup(
    "builder",
    package=__name__,
    short_help="Manage the build cache",
    help="Manage the build cache: prune it.",
)
