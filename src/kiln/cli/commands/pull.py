"""kiln pull: copy an image into local storage."""

from __future__ import annotations

import click

from kiln.cli.commands._registry_flags import no_op_flags, registry_flags
from kiln.cli.state import State, pass_state
from kiln.util.choices import PULL_POLICIES


@click.command("pull", short_help="Pull an image from a registry or a file transport")
@click.argument("source")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@click.option(
    "-a", "--all-tags", is_flag=True, help="All tagged images of the repository (registries)"
)
@click.option(
    "--all-platforms",
    is_flag=True,
    help="Pull every image of a manifest list and keep the list (registries, oci:, oci-archive:)",
)
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to pick")
@click.option("--arch", default=None, help="Architecture to pick (registries)")
@click.option("--os", "os_", default=None, help="Operating system to pick (registries)")
@click.option("--variant", default=None, help="Architecture variant to pick (registries)")
@click.option(
    "--policy",
    type=click.Choice(PULL_POLICIES),
    default=None,
    help="Pull policy for registries (default: always)",
)
@no_op_flags("--disable-content-trust")
@registry_flags(scope=" (registries)", retry=True)
@pass_state
def command(
    state: State,
    source,
    quiet,
    all_tags,
    all_platforms,
    platform,
    arch,
    os_,
    variant,
    policy,
    registry_options,
):
    """Copy SOURCE into local storage and print the image ID. SOURCE is oci:DIR[:TAG],
    oci-archive:FILE[:TAG], docker-archive:FILE[:REF], dir:DIR, or a registry
    reference (docker://REF or just REF)."""
    from kiln.ops import file_transfer

    # start-up: `kiln pull --help` loads neither; kiln.ops.options would load the
    # runtime's options too
    from kiln.ops.pull_options import PullRequest

    request = PullRequest.of(
        source,
        policy=policy,
        platform=platform,
        arch=arch,
        os=os_,
        variant=variant,
        all_tags=all_tags,
        all_platforms=all_platforms,
        options=registry_options,
        quiet=quiet,
    )
    with state.context(quiet=request.quiet) as ctx:
        file_transfer.pull(ctx, request)
