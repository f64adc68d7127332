"""``kiln build history ls|inspect|rm|prune`` and ``kiln build report``: the records builds
leave in the store (``kiln.ops.build_history``), reached through ``kiln build``'s first word
(see ``kiln.cli.commands.build.BuildCommand``)."""

from __future__ import annotations

import time

import click

from kiln.cli.state import State, format_option, pass_state

__all__ = ["history", "report"]


@click.group("history", help="List, show and remove the records builds leave in the store.")
def history() -> None:
    return None


@history.command("ls", help="List build records, newest first.")
@format_option(help="Format output: json, or a Go template such as {{.ID}}")
@click.option("-q", "--quiet", is_flag=True, help="Print only the record IDs")
@click.option("--no-trunc", is_flag=True, help="Do not shorten IDs")
@pass_state
def ls(state: State, format_, quiet, no_trunc) -> None:
    from kiln.cli import render
    from kiln.ops import build_history as ops

    with state.context() as ctx:
        rows = ops.list_records(ctx)
    objs = [{"ID": r.id, "Created": r.created, "Duration": round(r.duration, 3),
             "Status": r.status, "Image": r.image_id, "Names": r.names, "Steps": r.steps,
             "Cached": r.cached} for r in rows]  # fmt: skip
    if quiet:
        state.echo("".join(f"{r.id}\n" for r in rows), nl=False)
    elif format_ == "json":
        state.echo(render.to_json(objs))
    elif format_:
        state.echo(render.templated(format_, objs), nl=False)
    else:
        table = [(r.id if no_trunc else r.id[:12], render.ago(r.created), f"{r.duration:.1f}s",
                  r.status, f"{r.steps} ({r.cached} cached)",
                  ", ".join(r.names) or r.image_id.removeprefix("sha256:")[:12])
                 for r in rows]  # fmt: skip
        state.echo(render.table(("BUILD ID", "CREATED", "DURATION", "STATUS", "STEPS", "IMAGE"),
                                table), nl=False)  # fmt: skip


@history.command("inspect", help="Show a build record as JSON (default: the newest).")
@click.argument("build", required=False, default="")
@pass_state
def inspect(state: State, build) -> None:
    from kiln.cli import render
    from kiln.ops import build_history as ops

    with state.context() as ctx:
        state.echo(render.to_json(ops.inspect(ctx, build)))


@history.command("rm", help="Remove build records.")
@click.argument("builds", nargs=-1, required=True)
@pass_state
def rm(state: State, builds) -> None:
    from kiln.ops import build_history as ops

    with state.context() as ctx:
        for gone in ops.remove(ctx, list(builds)):
            state.echo(gone)


@history.command("prune", help="Remove old build records (they never hold images or layers).")
@click.option("--keep-duration", default="", metavar="DURATION",
              help="Keep records younger than this (e.g. 48h)")  # fmt: skip
@click.option("--keep", type=int, default=0, help="Keep this many newest records")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every record")
@pass_state
def prune(state: State, keep_duration, keep, all_) -> None:
    from kiln.ops import build_history as ops

    with state.context() as ctx:
        count = ops.prune(ctx, keep_duration=keep_duration, keep=keep, all=all_)
    state.echo(f"Removed {count} build records")


@click.command("report", help="Write a build's report (default: the newest build) as one "
               "self-contained HTML page: timeline, cache, layers, layer efficiency.")  # fmt: skip
@click.argument("build", required=False, default="")
@click.option("-o", "--output", "output", required=True, metavar="FILE",
              help="Where to write the page (- for stdout)")  # fmt: skip
@pass_state
def report(state: State, build, output) -> None:
    import sys

    from kiln.cli.report_html import render_report
    from kiln.ops import build_history as ops
    from kiln.util.output import open_output

    started = time.monotonic()
    with state.context() as ctx:
        page = render_report(ops.report_data(ctx, build))
    with open_output(output, stdout=sys.stdout.buffer) as out:
        out.file.write(page.encode("utf-8"))
    if output != "-":
        state.echo(f"Wrote {output} ({len(page.encode()) // 1024} KiB) in "
                   f"{time.monotonic() - started:.1f}s", err=True)  # fmt: skip
