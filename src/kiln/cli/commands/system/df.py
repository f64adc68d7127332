"""kiln system df: what kiln's store takes on disk, and what a prune would free (podman
system df, docker system df)."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("df", short_help="Show how much disk the images and the build cache take")
@click.option("-v", "--verbose", is_flag=True, help="List the build cache's entries too")
@format_option(
    help="Format output: json, table (the default) or a Go template ({{.Type}} {{.Size}})"
)
@pass_state
def command(state: State, verbose, format_):
    """Images (each layer counted once, however many images share it) and the build cache
    (the RUN --mount=type=cache directories and the build contexts' checksum indexes): how many, how many in use, their size and
    what pruning would free (kiln image prune -a, kiln builder prune --all)."""
    from typing import Any

    from kiln.cli import render
    from kiln.ops.disk_usage import disk_usage

    with state.context() as ctx:
        usage = disk_usage(ctx)
    caches = usage.build_cache
    rows: list[dict[str, Any]] = [
        {"Type": "Images", "Total": len(usage.images), "Active": usage.active_images,
         "Size": int(usage.layers_size), "Reclaimable": int(usage.reclaimable)},
        {"Type": "Build Cache", "Total": len(caches), "Active": sum(c.in_use for c in caches),
         "Size": sum(c.size for c in caches),
         "Reclaimable": sum(c.size for c in caches if not c.in_use)},
    ]  # fmt: skip
    if format_ == "json":
        state.echo(render.to_json(rows))
        return
    shown = [
        {**r, "Size": _size(r["Size"]), "Reclaimable": _size(r["Reclaimable"]) + _share(r)}
        for r in rows
    ]  # podman's and docker's columns: go-units sizes (13.94MB), the reclaimable share
    if format_ and format_ != "table":
        state.echo(render.templated(format_, shown), nl=False)
        return
    headers = ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    text = render.table(headers, [[r[h.title()] for h in headers] for r in shown])
    lines = text.splitlines()
    if verbose:
        lines += ["", f"{'CACHE ID':<34}{'CACHE TYPE':<17}{'IN USE':<8}{'SIZE':<12}LAST USED"]
        for c in caches:
            lines.append(f"{c.name:<34}{c.kind:<17}{'yes' if c.in_use else 'no':<8}"
                         f"{render.human_size(c.size):<12}{render.ago(c.last_used)}")  # fmt: skip
    state.echo("\n".join(lines))


def _size(n: int) -> str:
    from kiln.cli import render

    return render.human_size(n, 4).replace(" ", "")  # go-units HumanSize: 13.94MB, 0B


def _share(row: dict) -> str:
    return f" ({100 * row['Reclaimable'] // row['Size']}%)" if row["Size"] else " (0%)"
