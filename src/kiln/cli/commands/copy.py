"""kiln copy: Docker's COPY into a working container."""

from __future__ import annotations

from kiln.cli.commands._copy_into import copy_into_command

command = copy_into_command(
    "copy",
    add=False,
    short_help="Copy content into a working container",
    help="Copy content into a working container: SRC... relative to the context, DEST inside"
    " CONTAINER.",
)
