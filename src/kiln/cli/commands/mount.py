"""kiln mount: mount a working container's root filesystem."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("mount", short_help="Mount a working container's root filesystem")
@click.argument("containers", nargs=-1)
@pass_state
def command(state: State, containers):
    """Mount each CONTAINER and print the path of its merged root filesystem.

    Without arguments, list the mounted containers.
    """
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        if not containers:
            lines = [f"{r.name} {r.mount_point}" for r in ops.list_containers(ctx) if r.mount_point]
        elif len(containers) == 1:
            lines = [ops.mount_container(ctx, containers[0])]
        else:
            lines = [f"{c} {ops.mount_container(ctx, c)}" for c in containers]
    if lines:
        state.echo("\n".join(lines))
