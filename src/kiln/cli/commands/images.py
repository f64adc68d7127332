"""kiln images: list images in local storage."""

from __future__ import annotations

import time

import click

from kiln.cli.state import State, format_option, pass_state

_SORT_KEYS = ("created", "id", "repository", "size", "tag")
HEADINGS = {"ID": "IMAGE ID", "ReadOnly": "R/O"}  # podman's, for a ``table`` --format


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
        state.echo(render.to_json([_json(s) for s in summaries]))
        return
    with cyclic_gc_paused():  # a row per name, no cycles among them
        named = _sorted(_named(summaries), sort, no_trunc)
        if quiet:
            ids = dict.fromkeys(_shown_id(s, no_trunc) for s, _repo, _tag in named)
            if ids:
                state.echo("\n".join(ids))
            return
        now = time.time()
        if format_ and format_ != "table":
            per_image = {s.id: _image_fields(s) for s in summaries}  # once, not once a name
            rows = [
                {**_row(s, repo, tag, no_trunc, now), **per_image[s.id]} for s, repo, tag in named
            ]
            state.echo(render.templated(format_, rows, noheading, HEADINGS), nl=False)
            return
        headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else [])
        headers += ["IMAGE ID", "CREATED", "SIZE"]
        table_rows = [
            [repo, tag]
            + ([s.digest] if digests else [])
            + [_shown_id(s, no_trunc), render.ago(s.created, now), render.human_size(s.size)]
            for s, repo, tag in named
        ]
    state.echo(render.table(None if noheading else headers, table_rows), nl=False)


def _repo_digests(s) -> list[str]:
    from kiln.ops.images import podman_repo_digests

    return podman_repo_digests(s.names, s.repo_digests, s.digest)


def _json(s) -> dict:
    return {**s.to_json(), "RepoDigests": _repo_digests(s)}


def _named(summaries) -> list[tuple]:
    """``(summary, repository, tag)``: a row per name of each image, ``<none>`` if it has none."""
    return [(s, repo, tag) for s in summaries for repo, tag in s.repo_tags()]


def _shown_id(s, no_trunc: bool) -> str:
    return s.id if no_trunc else s.short_id


def _image_fields(s) -> dict:
    """The fields of a ``--format`` row that are the same for every name of an image."""
    from kiln.cli.go_template import NIL_MAP

    return {
        "RepoDigests": _repo_digests(s),
        "History": ", ".join(s.names),  # podman: every name the image had; kiln keeps today's
        "Labels": s.labels or NIL_MAP,  # none: podman's nil map (map[], null in JSON)
    }


def _row(s, repo: str, tag: str, no_trunc: bool, now: float) -> dict:
    """One row as a ``--format`` template sees it (podman's field names)."""
    from kiln.cli import render

    since = render.ago(s.created, now)
    size = render.human_size(s.size)
    created_at = render.go_time(int(s.created_ts))  # podman: whole seconds, Go's form
    return {
        "ID": _shown_id(s, no_trunc),
        "Id": s.id.removeprefix("sha256:"),  # podman: the full ID, bare, as in --format json
        "Repository": repo,
        "Tag": tag,
        "Digest": s.digest,
        "Created": since,
        "CreatedSince": since,
        "CreatedAt": created_at,
        "CreatedTime": created_at,
        "Size": size,
        "VirtualSize": s.size,
        "SharedSize": 0,
        "ParentId": s.parent_id.removeprefix("sha256:"),
        "RepoTags": s.names,
        "Dangling": s.dangling,
        "Containers": s.containers,
        "Names": s.names,
        "ReadOnly": False,
        "IsManifestList": s.is_list,
    }


def _sorted(named: list[tuple], key: str, no_trunc: bool) -> list[tuple]:
    if key == "created":
        return sorted(named, key=lambda n: n[0].created_ts, reverse=True)
    if key == "size":
        return sorted(named, key=lambda n: n[0].size)
    if key == "id":
        return sorted(named, key=lambda n: _shown_id(n[0], no_trunc))
    return sorted(named, key=lambda n: n[1] if key == "repository" else n[2])
