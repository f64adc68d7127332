"""kiln commit: create an image from a working container."""

from __future__ import annotations

import click

from kiln.cli.commands._commit_flags import compression_option, iidfile_option
from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.go_flags import OptionalValue
from kiln.cli.state import State, pass_state


@click.command("commit", short_help="Create an image from a working container")
@click.argument("container")
@click.argument("image", required=False)
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(("oci", "docker")),
    default=None,
    help="Image format (default: the container's, oci unless set)",
)
@click.option("--squash", is_flag=True, help="One layer holding the whole filesystem")
@click.option("--rm", is_flag=True, help="Remove the working container after committing")
@click.option(
    "--timestamp",
    type=int,
    default=None,
    metavar="EPOCH",
    help="Set created times and every file's mtime to EPOCH (reproducible digests)",
)
@compression_option
@click.option("-D", "--disable-compression", is_flag=True, help="Same as --compression none")
@iidfile_option
@click.option(
    "-c",
    "--change",
    "changes",
    multiple=True,
    metavar="INSTRUCTION",
    help="Apply a Dockerfile instruction, e.g. 'CMD [\"sh\"]'",
)
@click.option("--omit-history", is_flag=True, help="Write no history in the image")
@click.option(
    "--unsetenv", multiple=True, metavar="NAME", help="Leave NAME out of the image's environment"
)
@click.option(
    "--manifest",
    default=None,
    metavar="LIST",
    help="Add the image to this manifest list (made if missing), replacing its platform's entry",
)
@click.option(
    "--identity-label",
    type=click.BOOL,
    cls=OptionalValue,
    default=None,
    help="Accepted for buildah's scripts: kiln adds no builder label either way",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the image ID")
@registry_flags(scope=" (a docker:// IMAGE)")
@pass_state
def command(state: State, container, image, format_, squash, rm, timestamp, compression,
            disable_compression, iidfile, changes, omit_history, unsetenv, manifest,
            identity_label, quiet, registry_options):  # fmt: skip
    """Write CONTAINER's changes as a new image named IMAGE (untagged if omitted). IMAGE
    may be docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]
    or dir:DIR: the image is written there, not kept in the store."""
    from kiln.ops import containers as ops
    from kiln.ops.transports import names_transport

    elsewhere = bool(image) and names_transport(image)
    if elsewhere and manifest:
        raise click.UsageError("--manifest needs an image kept in the store, not a transport")
    commit = dict(
        image_format=format_, squash=squash, timestamp=timestamp,
        compression="none" if disable_compression else compression, iidfile=iidfile,
        changes=list(changes), omit_history=omit_history, unset_env=list(unsetenv),
        oci_fields_only=True,
    )  # fmt: skip
    with state.context(quiet=quiet) as ctx:  # the layer's bytes as it is written
        if elsewhere:
            from kiln.ops.commit_to import commit_container_to

            record = commit_container_to(
                ctx, container, image, rm=rm, options=registry_options, **commit
            )
        else:
            record = ops.commit_container(ctx, container, image, rm=rm, **commit)
        if manifest:
            from kiln.ops import manifest_join  # start-up: only --manifest writes a list

            manifest_join.join(ctx, manifest, [record.id], manifest_join.format_of(record))
    state.echo(record.id.removeprefix("sha256:"))
