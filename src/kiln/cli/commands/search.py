"""kiln search: search a registry for images, or list a repository's tags."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.state import State, format_option, pass_state

_DESCRIPTION_WIDTH = 44


@click.command("search", short_help="Search a registry for images")
@click.argument("term")
@click.option("--limit", type=int, default=None, help="Most results to show (default 25)")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="is-official=BOOL, is-automated=BOOL, stars=N"
)
@click.option("--list-tags", is_flag=True, help="List the tags of the repository TERM")
@format_option()
@click.option("--no-trunc", is_flag=True, help="Do not truncate descriptions")
@registry_flags(retry=True)
@pass_state
def command(
    state: State,
    term,
    limit,
    filters,
    list_tags,
    format_,
    no_trunc,
    registry_options,
):
    """Search registries for TERM ("host/term" searches one registry), with /v1/search
    where the registry serves it and its catalog otherwise."""
    from kiln.cli import render
    from kiln.ops import registry as ops

    results = ops.search(
        None,
        term,
        limit=25 if limit is None else limit,
        filters=filters,
        list_tags=list_tags,
        options=registry_options,
    )
    if list_tags:
        rows = [{"Name": r.name, "Tag": r.tag} for r in results]
        headers = ("NAME", "TAG")
    else:
        rows = [
            {
                "Index": r.index,
                "Name": r.name,
                "Description": _desc(r.description, no_trunc),
                "Stars": r.stars,
                "Official": "[OK]" if r.official else "",
                "Automated": "[OK]" if r.automated else "",
            }
            for r in results
        ]
        headers = ("NAME", "DESCRIPTION")
    if format_ == "json":
        state.echo(render.to_json(rows))
    elif format_:
        state.echo(render.templated(format_, rows), nl=False)
    elif rows:
        keys = [h.title() for h in headers]
        state.echo(render.table(headers, [[row[k] for k in keys] for row in rows]), nl=False)


def _desc(text: str, no_trunc: bool) -> str:
    text = " ".join(text.split())
    if no_trunc or len(text) <= _DESCRIPTION_WIDTH:
        return text
    return text[: _DESCRIPTION_WIDTH - 3] + "..."
