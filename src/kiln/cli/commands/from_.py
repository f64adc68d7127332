"""kiln from: create a working container from an image (or scratch)."""

from __future__ import annotations

import click

from kiln.cli.commands._container_opts import (
    SECURITY_OPT_HELP,
    namespace_flags,
    namespace_settings,
)
from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.commands._run_flags import run_flags, run_settings, volume_flag
from kiln.cli.state import State, pass_state
from kiln.util.choices import IMAGE_FORMATS, PULL_POLICIES


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
    type=click.Choice(IMAGE_FORMATS),
    default=None,
    help="Image format the container commits to (default oci, or $BUILDAH_FORMAT)",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not show pull progress")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Platform to use")
@click.option("--arch", default=None, help="Architecture to use (the rest the host's)")
@click.option("--os", "os_", default=None, help="Operating system to use")
@click.option("--variant", default=None, help="Architecture variant to use")
@click.option("--cidfile", default=None, metavar="FILE", help="Write the container's ID to FILE")
@registry_flags(scope=" (registries)")
@run_flags("from")
@volume_flag("from")
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="HOST[:CTR][:PERMS]",
    help="Add a host device to every kiln run (PERMS: of rwm)",
)
@click.option("--security-opt", "security_opts", multiple=True, metavar="OPT",
              help=SECURITY_OPT_HELP)  # fmt: skip
@namespace_flags
@pass_state
def command(state: State, image, name, pull, format_, quiet, platform, arch, os_, variant,
            cidfile, registry_options, volumes, devices, security_opts, **kw):  # fmt: skip
    """Create a working container over IMAGE and print its name. The RUN flags are kept
    with it: kiln run uses them unless its own flags say otherwise."""
    from kiln.ops import containers as ops
    from kiln.ops.pull_options import platform_choice
    from kiln.runtime.options import parse_security_opts

    settings = run_settings(
        kw, devices=devices, **parse_security_opts(security_opts), **namespace_settings(kw)
    )
    with state.context(quiet=True) as ctx:
        b = ops.create_container(
            ctx, image, name=name, pull=pull, image_format=format_, run=settings,
            platform=platform_choice(platform, arch, os_, variant),
            options=registry_options, cidfile=cidfile, volumes=volumes,
        )  # fmt: skip
    state.echo(b.name)
