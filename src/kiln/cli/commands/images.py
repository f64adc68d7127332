"""kiln images: list images in local storage."""

from __future__ import annotations

import time

import click

from kiln.cli.state import State, format_option, pass_state

_SORT_KEYS = ("created", "id", "repository", "size", "tag")


@click.command("images", short_help="List images in local storage")
@click.argument("image", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images, also intermediate ones")
@click.option("-q", "--quiet", is_flag=True, help="Show only image IDs")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output")
@click.option("-n", "--noheading", is_flag=True, help="Do not print column headings")
@click.option(
    "-f", "--filter", "filters", multiple=True, metavar="FILTER", help="Filter output (KEY=VALUE)"
)
@click.option(
    "--sort",
    type=click.Choice(_SORT_KEYS),
    default="created",
    show_default=True,
    help="Sort by this column (created: newest first)",
)
@format_option()
@pass_state
def command(state: State, image, all_, quiet, digests, no_trunc, noheading, filters, sort, format_):
    """List images in local storage, newest first (like `podman images`); with IMAGE, only
    the images whose name matches it."""
    from kiln.cli import render
    from kiln.ops import images as ops
    from kiln.util.gc_pause import cyclic_gc_paused

    with state.context() as ctx:
        summaries = ops.list_images(
            ctx, all=all_, filters=filters, references=[image] if image else []
        )
    if format_ == "json":
        state.echo(render.to_json([s.to_json() for s in summaries]))
        return
    with cyclic_gc_paused():  # a dict per row, no cycles among them
        rows = _sorted(_rows(summaries, no_trunc), sort)
    if quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        if seen:
            state.echo("\n".join(seen))
        return
    if format_ and format_ != "table":
        state.echo(render.templated(format_, rows, noheading), nl=False)
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else [])
    headers += ["IMAGE ID", "CREATED", "SIZE"]
    table_rows = [
        [r["Repository"], r["Tag"]]
        + ([r["Digest"]] if digests else [])
        + [r["ID"], r["CreatedSince"], r["Size"]]
        for r in rows
    ]
    state.echo(render.table(None if noheading else headers, table_rows), nl=False)


def _rows(summaries, no_trunc: bool) -> list[dict]:
    from kiln.cli import render

    rows = []
    now = time.time()
    for s in summaries:
        # per image, not per name: the same for each of its rows
        since = render.ago(s.created, now)
        size = render.human_size(s.size)
        shown_id = s.id if no_trunc else s.short_id
        for repo, tag in s.repo_tags():
            rows.append(
                {
                    "ID": shown_id,
                    "Id": s.id,
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": s.digest,
                    "Created": since,
                    "CreatedSince": since,
                    "CreatedAt": s.created,
                    "Size": size,
                    "VirtualSize": size,
                    "Dangling": s.dangling,
                    "Containers": s.containers,
                    "Names": s.names,
                    "Labels": s.labels,
                    "_created": s.created_ts,
                    "_size": s.size,
                }
            )
    return rows


def _sorted(rows: list[dict], key: str) -> list[dict]:
    if key == "created":
        return sorted(rows, key=lambda r: r["_created"], reverse=True)
    if key == "size":
        return sorted(rows, key=lambda r: r["_size"])
    field = {"id": "ID", "repository": "Repository", "tag": "Tag"}[key]
    return sorted(rows, key=lambda r: r[field])
