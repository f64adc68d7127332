"""kiln umount: unmount a working container's root filesystem."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("umount", short_help="Unmount the root filesystem of working containers")
@click.argument("containers", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="Unmount every mounted container")
@pass_state
def command(state: State, containers, all_):
    """Unmount each CONTAINER (kiln run/copy keep working on it)."""
    from kiln.ops import containers as ops

    if all_ == bool(containers):
        raise click.UsageError("give container names or --all")
    with state.context(quiet=True) as ctx:
        if all_:
            containers = [r.id for r in ops.list_containers(ctx) if r.mount_point]
        ids = [ops.unmount_container(ctx, c) for c in containers]
    if ids:
        state.echo("\n".join(ids))
