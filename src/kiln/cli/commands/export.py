"""kiln export: a working container's filesystem as a tar archive."""

from __future__ import annotations

import sys

import click

from kiln.cli.state import State, pass_state


@click.command("export", short_help="Export a working container's filesystem as a tar archive")
@click.argument("container")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE (else stdout)")
@pass_state
def command(state: State, container, output):
    """Write the merged root filesystem of CONTAINER as an uncompressed tar."""
    from kiln.cli.render import EventRenderer
    from kiln.ops import containers as ops

    to_stdout = not output or output == "-"
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write a tar to a terminal: use -o FILE")
    # the tar may own standard output: progress (JSON too) goes to stderr, as kiln build -o -
    with state.context(events=EventRenderer(state.progress, out=sys.stderr)) as ctx:
        sys.stdout.flush()
        ops.export_container(ctx, container, "-" if to_stdout else output,
                             stdout=sys.stdout.buffer)  # fmt: skip
