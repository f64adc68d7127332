"""kiln manifest create: a new manifest list, optionally holding images."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.state import State, pass_state


@click.command("create", short_help="Create a manifest list or image index")
@click.argument("list_name", metavar="LIST")
@click.argument("images", nargs=-1, metavar="[IMAGE...]")
@click.option(
    "--all", "all_", is_flag=True, help="Add all of the lists' images if an IMAGE is a list"
)
@click.option(
    "-a", "--amend", is_flag=True, help="Modify an existing list if one has the name already"
)
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(("oci", "v2s2")),
    default=None,
    help="Type of the list: an OCI image index (default) or a Docker manifest list",
)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set an annotation on the list itself (repeatable)",
)
@registry_flags(scope=" (registries)")
@pass_state
def command(state: State, list_name, images, all_, amend, format_, annotations, registry_options):
    """Create the list LIST holding each IMAGE (from local storage or a transport such
    as docker://REF) and print its ID."""
    from kiln.cli.commands.manifest._platform_flags import parse_annotations
    from kiln.ops import manifests

    with state.context(quiet=True) as ctx:
        manifests.create(
            ctx,
            list_name,
            images,
            all=all_,
            amend=amend,
            format=format_,
            annotations=parse_annotations(annotations),
            options=registry_options,
        )
