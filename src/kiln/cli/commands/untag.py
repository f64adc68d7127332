"""kiln untag: remove names from an image."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("untag", short_help="Remove a name from a local image")
@click.argument("image")
@click.argument("names", nargs=-1, metavar="[NAME...]")
@pass_state
def command(state: State, image, names):
    """Remove NAMEs from IMAGE; without NAMEs, remove all of its names."""
    from kiln.ops import images as ops

    with state.context() as ctx:
        ops.untag(ctx, image, *names)
