"""kiln history: show the history of an image."""

from __future__ import annotations

from typing import Any

import click

from kiln.cli.go_flags import GO_BOOL, OptionalValue
from kiln.cli.state import State, format_option, pass_state

CREATED_BY_WIDTH = 45


@click.command("history", short_help="Show history of a specified image")
@click.argument("image")
@click.option(
    "-H",
    "--human",
    cls=OptionalValue,
    type=GO_BOOL,
    default=True,
    show_default=True,
    help="Human sizes and ages (-H=false: RFC 3339 times)",
)
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Display the numeric IDs only")
@format_option()
@pass_state
def command(state: State, image, human, no_trunc, quiet, format_):
    """Show the layers of IMAGE and the commands that made them, newest first."""
    from kiln.cli import render
    from kiln.ops import images as ops
    from kiln.ops.timefmt import parse_time

    with state.context() as ctx:
        entries = ops.history(ctx, image)
    if format_ == "json":
        state.echo(render.to_json([e.to_json() for e in entries]))
        return
    rows: list[dict[str, Any]] = []
    for e in entries:
        # podman: the ID without "sha256:", 12 digits unless --no-trunc
        shown_id = e.id if e.id == "<missing>" else e.id.removeprefix("sha256:")
        shown_id = shown_id if no_trunc else shown_id[:12]
        created_by = " ".join(e.created_by.split()) if not no_trunc else e.created_by
        if not no_trunc and len(created_by) > CREATED_BY_WIDTH:
            created_by = created_by[: CREATED_BY_WIDTH - 3] + "..."
        rows.append(
            {
                "ID": shown_id,
                "Created": render.ago(e.created) if human else _rfc3339_seconds(e.created),
                "CreatedSince": render.ago(e.created),
                "CreatedAt": render.go_time(int(parse_time(e.created) or 0)),
                "CreatedBy": created_by,
                "Size": render.human_size(e.size) if human else str(e.size),
                "Comment": e.comment,
                "Tags": e.tags,
            }
        )
    if quiet:
        state.echo("".join(r["ID"] + "\n" for r in rows), nl=False)
        return
    if format_ and format_ != "table":
        state.echo(render.templated(format_, rows), nl=False)
        return
    table_rows = [[r["ID"], r["Created"], r["CreatedBy"], r["Size"], r["Comment"]] for r in rows]
    headers = ["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    state.echo(render.table(headers, table_rows), nl=False)


def _rfc3339_seconds(created: str) -> str:
    """``2024-01-02T03:04:05Z``: -H=false's time, whole seconds as podman prints it."""
    import time

    from kiln.ops.timefmt import parse_time

    ts = parse_time(created)
    return created if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))
