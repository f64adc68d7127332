"""kiln rmi: remove images."""

from __future__ import annotations

import click

from kiln.cli.commands._removal_report import report_removal
from kiln.cli.state import State, pass_state


@click.command("rmi", short_help="Remove one or more images from local storage")
@click.argument("images", nargs=-1, metavar="IMAGE...")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all images")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Also remove containers that use the images; untag by ID; no error for missing images",
)
@click.option("-i", "--ignore", is_flag=True, help="Ignore errors for images that do not exist")
@pass_state
def command(state: State, images, all_, force, ignore):
    """Remove IMAGEs. A name of an image with other names is only untagged. As podman:
    an image with child images goes too (they keep their data; it is shown untagged,
    not deleted), and so do the parents a removal leaves dangling.

    Exit status: 0 all removed; 1 an image did not exist (not with --force or
    --ignore, as podman); 2 an image is in use by a container; 125 other errors.
    """
    from kiln.ops import images as ops

    with state.context() as ctx:
        result = ops.remove_images(ctx, images, force=force, all=all_, ignore=ignore or force)
    report_removal(state, result)
