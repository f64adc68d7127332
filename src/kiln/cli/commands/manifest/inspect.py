"""kiln manifest inspect: print a manifest list's document."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.state import State, pass_state


@click.command("inspect", short_help="Display the contents of a manifest list or image index")
@click.argument("name", metavar="IMAGE")
@registry_flags(scope=" (registries)")
@pass_state
def command(state: State, name, registry_options):
    """Print the list IMAGE (local, else read from its registry) as indented JSON."""
    from kiln.cli import render
    from kiln.ops import manifests

    with state.context(quiet=True) as ctx:
        doc = manifests.inspect(ctx, name, options=registry_options)
    state.echo(render.to_json(doc))
