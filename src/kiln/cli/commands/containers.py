"""kiln containers: list working containers."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("containers", short_help="List working containers")
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Also list containers whose state kiln cannot use"
)
@click.option("--json", "json_", is_flag=True, help="Output as JSON")
@click.option("-q", "--quiet", is_flag=True, help="Only container IDs (full)")
@click.option("-n", "--noheading", is_flag=True, help="No column headings")
@click.option("--notruncate", is_flag=True, help="Full IDs")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="FILTER",
    help="Only containers matching: id=PREFIX, name=TEXT, ancestor=IMAGE (comma-joined or "
    "repeated: all must match)",
)
@format_option(help="Format output: json, or a Go template such as {{.ContainerName}}")
@pass_state
def command(state: State, all_, json_, quiet, noheading, notruncate, filters, format_):
    """List working containers and the images they are based on."""
    from kiln.cli import render
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        rows = ops.list_containers(ctx, all=all_, filters=filters)
    if json_ or format_ == "json":
        state.echo(render.to_json([r.to_json() for r in rows]))
        return
    if format_ and format_ != "table":
        # buildah's template fields, with full IDs as buildah gives them
        objs = [{"ContainerID": r.id, "Builder": "*" if r.builder else "",
                 "ImageID": r.image_id.removeprefix("sha256:"), "ImageName": r.image_name,
                 "ContainerName": r.name} for r in rows]  # fmt: skip
        state.echo(render.templated(format_, objs, noheading), nl=False)
        return

    def short(value: str) -> str:
        value = value.removeprefix("sha256:")
        return value if notruncate else value[:12]

    if quiet:  # full IDs, as buildah prints them
        if rows:
            state.echo("\n".join(r.id for r in rows))
        return
    headers = ["CONTAINER ID", "BUILDER", "IMAGE ID", "IMAGE NAME", "CONTAINER NAME"]
    table = [
        [short(r.id), "*" if r.builder else "", short(r.image_id), r.image_name, r.name]
        for r in rows
    ]
    state.echo(render.table(None if noheading else headers, table), nl=False)
