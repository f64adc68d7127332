"""kiln push: copy an image from local storage to a destination."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import no_op_flags, registry_flags
from kiln.cli.state import State, pass_state


@click.command("push", short_help="Push an image to a specified destination")
@click.argument("image")
@click.argument("destination", required=False)
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(("oci", "docker", "v2s2", "v2s1")),
    default=None,
    help="Manifest type to write (default: as stored); v2s1: signed Docker schema 1",
)
@click.option(
    "--all", "all_", is_flag=True, help="Push the images of a manifest list too, then the list"
)
@click.option("--compress", is_flag=True, help="Compress layers (dir: and oci: destinations)")
@click.option(
    "--compression-format",
    type=click.Choice(("gzip", "zstd")),
    default=None,
    help="Recompress layers with this algorithm where needed (registries)",
)
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@no_op_flags("--disable-content-trust", "--remove-signatures")
@registry_flags(scope=" (registries)", retry=True)
@click.option("--digestfile", default=None, help="Write the manifest digest to this file")
@pass_state
def command(
    state: State,
    image,
    destination,
    format_,
    all_,
    compress,
    compression_format,
    quiet,
    registry_options,
    digestfile,
):
    """Copy IMAGE to DESTINATION: oci:DIR[:TAG], oci-archive:FILE[:TAG],
    docker-archive:FILE[:REF], dir:DIR, or docker://REF (a registry)."""
    from kiln.ops import file_transfer
    from kiln.util.output import check_output, write_output

    if digestfile:
        check_output(digestfile)  # refuse a bad --digestfile before pushing
    fmt = "docker" if format_ == "v2s2" else format_
    with state.context(quiet=quiet) as ctx:
        result = file_transfer.push(
            ctx,
            image,
            destination,
            format=fmt,
            compress=compress,
            compression=compression_format,
            all=bool(all_),
            options=registry_options,
        )
    if digestfile:
        write_output(digestfile, result.manifest_digest.encode())
