"""kiln containers: list working containers."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("containers", short_help="List working containers")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Also list containers whose state kiln cannot use"
)
@click.option("--json", "json_", is_flag=True, help="Output as JSON")
@click.option("-q", "--quiet", is_flag=True, help="Only container IDs")
@click.option("-n", "--noheading", is_flag=True, help="No column headings")
@click.option("--notruncate", is_flag=True, help="Full IDs")
@pass_state
def command(state: State, all_, json_, quiet, noheading, notruncate):
    """List working containers and the images they are based on."""
    from kiln.cli import render
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        rows = ops.list_containers(ctx, all=all_)
    if json_:
        state.echo(render.to_json([r.to_json() for r in rows]))
        return

    def short(value: str) -> str:
        value = value.removeprefix("sha256:")
        return value if notruncate else value[:12]

    if quiet:
        if rows:
            state.echo("\n".join(short(r.id) for r in rows))
        return
    headers = ["CONTAINER ID", "BUILDER", "IMAGE ID", "IMAGE NAME", "CONTAINER NAME"]
    table = [
        [short(r.id), "*" if r.builder else "", short(r.image_id), r.image_name, r.name]
        for r in rows
    ]
    state.echo(render.table(None if noheading else headers, table), nl=False)
