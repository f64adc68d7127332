"""kiln rmi: remove images."""

from __future__ import annotations

import click

from kiln.cli.state import State, exit_with, pass_state

# podman rmi's exit codes
EXIT_NOT_FOUND = 1
EXIT_IN_USE = 2
EXIT_OTHER = 125


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
    from kiln.errors import Conflict, NotFound
    from kiln.ops import images as ops

    with state.context() as ctx:
        result = ops.remove_images(ctx, images, force=force, all=all_, ignore=ignore or force)
    lines = [f"Untagged: {n}" for n in result.untagged]
    lines += [f"Deleted: {i.removeprefix('sha256:')}" for i in result.deleted]
    if lines:
        state.echo("\n".join(lines))
    if not result.errors:
        return
    for exc in result.errors:
        state.echo(f"Error: {exc}", err=True)
    if all(isinstance(e, NotFound) for e in result.errors):
        exit_with(EXIT_NOT_FOUND)
    if any(isinstance(e, Conflict) for e in result.errors):
        exit_with(EXIT_IN_USE)
    exit_with(EXIT_OTHER)
