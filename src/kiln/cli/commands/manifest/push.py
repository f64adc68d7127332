"""kiln manifest push: push a manifest list (and its images) to a destination."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import no_op_flags, registry_flags
from kiln.cli.go_flags import OptionalValue
from kiln.cli.state import State, pass_state


@click.command("push", short_help="Push a manifest list or image index to a destination")
@click.argument("list_name", metavar="LIST")
@click.argument("destination", required=False)
@click.option(
    "--all",
    "all_",
    type=click.BOOL,
    cls=OptionalValue,
    default=True,
    show_default=True,
    help="Also push the images in the list",
)
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(("oci", "v2s2")),
    default=None,
    help="Manifest type to push (default: as stored)",
)
@click.option(
    "--compression-format",
    type=click.Choice(("gzip", "zstd")),
    default=None,
    help="Recompress layers with this algorithm where needed",
)
@click.option("--digestfile", default=None, help="Write the list's digest to this file")
@click.option("--rm", "rm_", is_flag=True, help="Remove the list after a successful push")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@no_op_flags("--remove-signatures")
@registry_flags(scope=" (registries)", retry=True)
@pass_state
def command(
    state: State,
    list_name,
    destination,
    all_,
    format_,
    compression_format,
    digestfile,
    rm_,
    quiet,
    registry_options,
):
    """Push LIST to DESTINATION (docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG];
    default: the list's name in its registry): its images first, then the list."""
    from kiln.ops import manifests

    with state.context(quiet=quiet) as ctx:
        manifests.push(
            ctx,
            list_name,
            destination,
            all=all_,
            format=format_,
            compression=compression_format,
            digestfile=digestfile,
            rm=rm_,
            options=registry_options,
        )
