"""kiln manifest rm: remove manifest lists (their images stay)."""

from __future__ import annotations

import click

from kiln.cli.commands._removal_report import report_removal
from kiln.cli.state import State, pass_state


@click.command("rm", short_help="Remove manifest lists or image indexes from local storage")
@click.argument("names", nargs=-1, required=True, metavar="LIST...")
@pass_state
def command(state: State, names):
    """Remove each LIST; the images it names stay in local storage. As podman: every LIST
    is tried, and the exit status is rmi's (1 when a name is not known)."""
    from kiln.ops import images

    with state.context(quiet=True) as ctx:
        result = images.remove_images(ctx, names, lists_only=True)
    report_removal(state, result)
