"""kiln manifest remove: drop an entry from a manifest list."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("remove", short_help="Remove an entry from a manifest list or image index")
@click.argument("list_name", metavar="LIST")
@click.argument("digest", metavar="DIGEST")
@pass_state
def command(state: State, list_name, digest):
    """Remove the entry with manifest DIGEST from LIST and print the list's ID."""
    from kiln.errors import KilnError
    from kiln.ops import manifests

    with state.context(quiet=True) as ctx:
        try:
            manifests.remove(ctx, list_name, digest)
        except KilnError as exc:
            raise type(exc)(f"removing from manifest list {list_name}: {exc}") from None
