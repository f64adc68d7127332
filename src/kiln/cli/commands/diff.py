"""kiln diff: what a working container (or an image) changed."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("diff", short_help="Show changes of a working container or an image")
@click.argument("name", metavar="CONTAINER|IMAGE")
@click.argument("other", required=False)
@format_option(help="json, or the default A/C/D lines")
@pass_state
def command(state: State, name, other, format_):
    """List paths added (A), changed (C) or deleted (D) by CONTAINER against its image
    (or by IMAGE against OTHER or its parent)."""
    from kiln.cli import render
    from kiln.errors import NotFound
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        changes = None
        if other is None:
            try:
                changes = [(c.kind, c.path) for c in ops.diff_container(ctx, name)]
            except NotFound:
                changes = None
        if changes is None:
            from kiln.ops import images

            try:
                changes = images.diff(ctx, name, other)
            except NotFound:
                raise NotFound(f"{name}: no such container or image") from None
    text = render.file_changes(changes, format_)
    if text is not None:
        state.echo(text)
