"""kiln image: the image verbs grouped, as `podman image` groups them.

Sub-commands are this package's modules (``exists.py`` -> ``kiln image exists``)
plus aliases of top-level verbs listed in ``ALIASES``.
"""

from __future__ import annotations

from kiln.cli.lazy import LazyGroup

_TOP = "kiln.cli.commands"
ALIASES = {
    "ls": f"{_TOP}.images:command",
    "list": f"{_TOP}.images:command",
    "inspect": f"{_TOP}.inspect:image_command",
    "history": f"{_TOP}.history:command",
    "rm": f"{_TOP}.rmi:command",
    "tag": f"{_TOP}.tag:command",
    "untag": f"{_TOP}.untag:command",
    "save": f"{_TOP}.save:command",
    "load": f"{_TOP}.load:command",
    "import": f"{_TOP}.import_:command",
    "push": f"{_TOP}.push:command",
    "pull": f"{_TOP}.pull:command",
}

command = LazyGroup(
    "image",
    package=__name__,
    aliases=ALIASES,
    short_help="Manage images",
    help="Manage images: list, inspect, tag, remove, prune, save, load, import, push, pull.",
)
