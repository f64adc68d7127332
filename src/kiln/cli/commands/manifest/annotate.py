"""kiln manifest annotate: change an entry's platform fields or annotations."""

from __future__ import annotations

import click

from kiln.cli.commands.manifest._platform_flags import platform_flags
from kiln.cli.state import State, pass_state


@click.command("annotate", short_help="Add or update information about an entry in a list")
@click.argument("list_name", metavar="LIST")
@click.argument("image", required=False, metavar="IMAGE")
@click.option(
    "--index", "index_", is_flag=True, help="Apply --annotation to the list itself, not an entry"
)
@platform_flags
@pass_state
def command(state: State, list_name, image, index_, platform):
    """Update the entry of LIST for IMAGE (a digest in the list, or a local image it holds)
    and print the list's ID."""
    from kiln.errors import InvalidArgument
    from kiln.ops import manifests

    if not image and not index_:
        raise InvalidArgument("an IMAGE (or --index) is required")
    notes = platform.pop("annotations")
    with state.context(quiet=True) as ctx:
        if index_:
            manifests.annotate(ctx, list_name, image or None, index_annotations=notes, **platform)
        else:
            manifests.annotate(ctx, list_name, image, annotations=notes, **platform)
