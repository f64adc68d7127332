"""kiln manifest add: add images to a manifest list."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.commands.manifest._platform_flags import platform_flags
from kiln.cli.state import State, pass_state


@click.command("add", short_help="Add images to a manifest list or image index")
@click.argument("list_name", metavar="LIST")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--all", "all_", is_flag=True, help="Add all of the list's images if IMAGE is a list")
@platform_flags
@registry_flags(scope=" (registries)")
@pass_state
def command(state: State, list_name, images, all_, platform, registry_options):
    """Add each IMAGE (local name or ID, or transport:ref) to LIST and print the list's ID.
    The platform fields come from each image's config unless overridden."""
    from kiln.ops import manifests

    with state.context(quiet=True) as ctx:
        for image in images:
            manifests.add(ctx, list_name, image, all=all_, **platform, options=registry_options)
