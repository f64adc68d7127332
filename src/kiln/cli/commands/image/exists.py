"""kiln image exists: exit 0 if an image is in local storage, 1 if not."""

from __future__ import annotations

import click

from kiln.cli.state import State, exit_with, pass_state


@click.command("exists", short_help="Check if an image exists in local storage")
@click.argument("image")
@pass_state
def command(state: State, image):
    """Exit 0 when IMAGE is in local storage, 1 when it is not; print nothing."""
    from kiln.ops import images as ops

    with state.context() as ctx:
        found = ops.image_exists(ctx, image)
    exit_with(0 if found else 1)
