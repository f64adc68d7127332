"""kiln image diff: the files an image changed against its parent or another image."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("diff", short_help="Inspect changes to an image's file systems")
@click.argument("image")
@click.argument("other", required=False)
@format_option(help="json, or the default A/C/D lines")
@pass_state
def command(state: State, image, other, format_):
    """List paths IMAGE added (A), changed (C) or deleted (D) against OTHER or its parent."""
    from kiln.cli import render
    from kiln.ops import images as ops

    with state.context() as ctx:
        changes = ops.diff(ctx, image, other)
    text = render.file_changes(changes, format_)
    if text is not None:
        state.echo(text)
