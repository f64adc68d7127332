"""kiln image tree: show an image's layers as a tree."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("tree", short_help="Print the layer hierarchy of an image in a tree format")
@click.argument("image")
@click.option(
    "--whatrequires", is_flag=True, help="Show the images that build on IMAGE's top layer"
)
@pass_state
def command(state: State, image, whatrequires):
    """Print IMAGE's layers, bottom first, and which images end at each (`podman image tree`)."""
    from kiln.ops import images as ops

    with state.context() as ctx:
        text = ops.tree(ctx, image, what_requires=whatrequires)
    state.echo(text, nl=not text.endswith("\n"))
