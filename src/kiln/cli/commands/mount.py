"""kiln mount: mount a working container's root filesystem."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("mount", short_help="Mount a working container's root filesystem")
@click.argument("containers", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as buildah mount --json")
@pass_state
def command(state: State, containers, as_json):
    """Mount each CONTAINER and print the path of its merged root filesystem.

    Without arguments, list the mounted containers.
    """
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        if not containers:
            mounts = [(r.name, r.mount_point) for r in ops.list_containers(ctx) if r.mount_point]
        else:
            mounts = [(c, ops.mount_container(ctx, c)) for c in containers]
    one = len(containers) == 1  # the path alone, as buildah prints it
    if as_json:
        import json  # start-up: only --json prints JSON

        rows = [{"mountPoint": p} if one else {"container": c, "mountPoint": p} for c, p in mounts]
        state.echo(json.dumps(rows or None, indent=4))  # none mounted: buildah's null
    elif mounts:
        state.echo("\n".join(p if one else f"{c} {p}" for c, p in mounts))
