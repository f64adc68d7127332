"""kiln add: Docker's ADD into a working container."""

from __future__ import annotations

from kiln.cli.commands._copy_into import copy_into_command

command = copy_into_command(
    "add",
    add=True,
    short_help="Add content (files, local archives extracted, URLs) to a container",
    help="Add content (files, local archives extracted, URLs) to a container: SRC... relative"
    " to the context, DEST inside CONTAINER.",
)
