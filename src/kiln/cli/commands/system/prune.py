"""kiln system prune: remove the build cache and unused images, and free what nothing keeps
(podman system prune, docker system prune)."""

from __future__ import annotations

import click

from kiln.cli.commands._prune_flags import confirmed, prune_flags
from kiln.cli.state import State, pass_state

_WARN = """WARNING! This command removes:
  - all dangling images
  - all dangling build cache"""
_WARN_ALL = """WARNING! This command removes:
  - all images without at least one container associated with them
  - all build cache, and the RUN --mount=type=cache directories no build is using"""


@click.command("prune", short_help="Remove the build cache and unused images")
@prune_flags(
    "Remove all unused images and all build cache, not just dangling ones",
    "Only what was made before TIME (images) or unused since (build cache): 24h",
)
@pass_state
def command(state: State, all_, filters, force):
    """Remove dangling build cache and dangling images (with --all: all build cache and every
    image no working container uses), then free the blobs, unpacked layers, snapshots and
    RUN stub layers nothing keeps, and say how much left the disk. Working containers stay
    (kiln rm)."""
    from kiln.cli.render import human_size
    from kiln.errors import InvalidArgument
    from kiln.ops.system_prune import system_prune

    until = ""
    for item in filters:
        key, _, value = item.partition("=")
        if key != "until":
            raise InvalidArgument(f'invalid filter "{item}": system prune takes until=TIME')
        until = value
    if not force and not confirmed(state, _WARN_ALL if all_ else _WARN):
        return
    with state.context() as ctx:
        result = system_prune(ctx, all=all_, until=until)
    if result.images.removed:
        state.echo("Deleted Images")
        state.echo("\n".join(i.removeprefix("sha256:") for i in result.images.removed))
    state.echo(
        f"Removed {result.cache.cache_entries} build cache entries and "
        f"{result.cache.cache_mounts} cache mount directories"
    )
    state.echo(f"Total reclaimed space: {human_size(result.bytes_freed)}", err=True)
