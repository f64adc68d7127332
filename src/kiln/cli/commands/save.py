"""kiln save: write images to an archive or directory."""

from __future__ import annotations

import sys

import click

from kiln.cli.state import State, pass_state

FORMATS = ("docker-archive", "oci-archive", "oci-dir", "docker-dir")


@click.command("save", short_help="Save images to an archive")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (default: stdout if not a TTY)")
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMATS),
    default="docker-archive",
    show_default=True,
    help="Archive or directory format",
)
@click.option("--compress", is_flag=True, help="Compress layers (oci-dir and docker-dir)")
@click.option(
    "-m",
    "--multi-image-archive",
    is_flag=True,
    help="Accepted for podman compatibility; several images always make one archive",
)
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@click.option("--uncompressed", is_flag=True, hidden=True)
@pass_state
def command(
    state: State, images, output, format_, compress, multi_image_archive, quiet, uncompressed
):
    """Save IMAGEs (names keep their names, IDs none) to FILE or standard output."""
    from kiln.errors import InvalidArgument
    from kiln.ops import archives
    from kiln.util.output import output_stream

    target = output
    if not output:
        if format_ in ("oci-dir", "docker-dir"):
            raise InvalidArgument(f"--format {format_} needs a directory: give it with -o DIR")
        if sys.stdout.isatty():
            raise InvalidArgument("refusing to save to terminal. Use -o flag or redirect")
        target = output_stream(sys.stdout.buffer)
    with state.context(quiet=quiet) as ctx:
        archives.save(ctx, list(images), target, format=format_, compress=compress)
