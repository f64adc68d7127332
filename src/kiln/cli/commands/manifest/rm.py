"""kiln manifest rm: remove manifest lists (their images stay)."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("rm", short_help="Remove manifest lists or image indexes from local storage")
@click.argument("names", nargs=-1, required=True, metavar="LIST...")
@pass_state
def command(state: State, names):
    """Remove each LIST; the images it names stay in local storage."""
    from kiln.ops import manifests

    with state.context(quiet=True) as ctx:
        removed = manifests.rm(ctx, *names)
    lines = [f"Untagged: {n}" for names_, _ in removed for n in names_]
    lines += [f"Deleted: {i.removeprefix('sha256:')}" for _, i in removed]
    if lines:
        state.echo("\n".join(lines))
