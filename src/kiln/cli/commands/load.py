"""kiln load: load images from a docker-archive or oci-archive."""

from __future__ import annotations

import sys

import click

from kiln.cli.state import State, pass_state


@click.command("load", short_help="Load image(s) from a tar archive")
@click.option("-i", "--input", "input_", metavar="FILE", help="Read from FILE instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@pass_state
def command(state: State, input_, quiet):
    """Load every image of a docker-archive or oci-archive (or an OCI layout directory).

    Prints `Loaded image: NAME` for each name, as podman does.
    """
    from kiln.errors import InvalidArgument
    from kiln.ops import archives

    source = input_
    if not input_:
        if sys.stdin.isatty():
            raise InvalidArgument(
                "cannot read from terminal, use command-line redirection or the --input flag"
            )
        source = sys.stdin.buffer
    with state.context(quiet=quiet) as ctx:
        archives.load(ctx, source)
