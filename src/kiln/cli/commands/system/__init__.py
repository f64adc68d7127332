"""kiln system: the store as a whole, as `podman system` groups it (``check``, ``leases``).

``info`` is an alias of the top-level verb.
"""

from __future__ import annotations

from kiln.cli.lazy import LazyGroup

command = LazyGroup(
    "system",
    package=__name__,
    aliases={"info": "kiln.cli.commands.info:command"},
    short_help="Manage kiln: check the store, list leases",
    help="Manage kiln: check and repair the store, list leases.",
)
