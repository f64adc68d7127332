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
    from kiln.ops import containers as ops
    from kiln.util.output import output_stream

    with state.context(quiet=True) as ctx:
        if output and output != "-":
            ops.export_container(ctx, container, output)
            return
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write a tar to a terminal: use -o FILE")
        b = ops._load(ctx, container)  # stream to stdout
        sys.stdout.flush()
        out = output_stream(sys.stdout.buffer)
        b.export(out)
        out.flush()
