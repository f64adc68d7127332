"""kiln import: create an image from a root filesystem tarball."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("import", short_help="Import a tarball to create a filesystem image")
@click.argument("source", metavar="TARBALL|URL|-")
@click.argument("reference", required=False)
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    metavar="INSTRUCTION",
    help="Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, ...)",
)
@click.option("-m", "--message", default="", help="Commit message for the imported image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the progress output")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]", help="Set the platform")
@click.option("--os", "os_", default=None, help="Set the OS of the image")
@click.option("--arch", default=None, help="Set the architecture of the image")
@click.option("--variant", default=None, help="Set the architecture variant of the image")
@pass_state
def command(state: State, source, reference, changes, message, quiet, platform, os_, arch, variant):
    """Create an image from TARBALL (a file, an http(s) URL, or - for stdin), named
    REFERENCE if given; print its ID."""
    from kiln.ops import archives

    if not platform and (os_ or arch or variant):
        from kiln.oci import Platform

        host = Platform.host()
        platform = "/".join(
            p for p in (os_ or host.os, arch or host.architecture, variant or "") if p
        )
    with state.context(quiet=quiet) as ctx:
        archives.import_image(
            ctx, source, reference, changes=list(changes), message=message, platform=platform
        )
