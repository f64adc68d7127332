"""kiln rename: give a working container a new name."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("rename", short_help="Rename a working container")
@click.argument("container")
@click.argument("new_name")
@pass_state
def command(state: State, container, new_name):
    """Give CONTAINER the name NEW_NAME (buildah rename); its ID stays."""
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        ops.rename_container(ctx, container, new_name)
