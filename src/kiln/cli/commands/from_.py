"""kiln from: create a working container from an image (or scratch)."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state
from kiln.util.choices import PULL_POLICIES


@click.command("from", short_help="Create a working container based on an image")
@click.argument("image", metavar="IMAGE|scratch")
@click.option("--name", default=None, help="Name of the working container")
@click.option(
    "--pull",
    type=click.Choice(PULL_POLICIES),
    default="missing",
    show_default=True,
    help="When to pull the image",
)
@click.option(
    "--format",
    "-f",
    "format_",
    type=click.Choice(("oci", "docker")),
    default=None,
    help="Image format the container commits to (default oci, or $BUILDAH_FORMAT)",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not show pull progress")
@pass_state
def command(state: State, image, name, pull, format_, quiet):
    """Create a working container over IMAGE and print its name."""
    from kiln.ops import containers as ops

    with state.context(quiet=True) as ctx:
        b = ops.create_container(ctx, image, name=name, pull=pull, image_format=format_)
    state.echo(b.name)
