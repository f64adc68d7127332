"""kiln rm: remove working containers."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("rm", short_help="Remove working containers")
@click.argument("containers", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every working container")
@pass_state
def command(state: State, containers, all_):
    """Remove each CONTAINER: unmount it and drop its writable layer; print its ID."""
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        ids = ops.remove_containers(ctx, list(containers), all=all_)
    if ids:
        state.echo("\n".join(ids))
