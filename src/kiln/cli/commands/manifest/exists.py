"""kiln manifest exists: exit 0 if a manifest list is in local storage, 1 if nothing has
the name, 125 if an image has it or it is no valid name (as podman)."""

from __future__ import annotations

import click

from kiln.cli.state import State, exit_with, pass_state


@click.command("exists", short_help="Check if a manifest list exists in local storage")
@click.argument("name", metavar="LIST")
@pass_state
def command(state: State, name):
    """Exit 0 when LIST is a manifest list in local storage, 1 when nothing has the name,
    125 when it is an image's name or no valid name."""
    from kiln.ops import manifests

    with state.context() as ctx:
        found = manifests.exists(ctx, name, strict=True)
    exit_with(0 if found else 1)
