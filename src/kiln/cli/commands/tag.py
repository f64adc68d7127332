"""kiln tag: add names to an image."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("tag", short_help="Add an additional name to a local image")
@click.argument("image")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@pass_state
def command(state: State, image, targets):
    """Give IMAGE each TARGET name; a name another image had moves here."""
    from kiln.ops import images as ops

    with state.context() as ctx:
        ops.tag(ctx, image, *targets)
