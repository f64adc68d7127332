"""kiln image prune: remove unused images."""

from __future__ import annotations

import click

from kiln.cli.commands._prune_flags import confirmed, prune_flags
from kiln.cli.state import State, pass_state

_WARN_DANGLING = "WARNING! This command removes all dangling images."
_WARN_ALL = (
    "WARNING! This command removes all images without at least one container associated with them."
)


@click.command("prune", short_help="Remove unused images")
@prune_flags("Remove all unused images, not just dangling ones")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="FILTER",
    help="Only prune images matching KEY=VALUE",
)
@pass_state
def command(state: State, all_, force, filters):
    """Remove dangling images (with --all, every image no container uses), then free their space
    (blobs, unpacked layers and snapshots nothing else uses) and say how much left the disk."""
    from kiln.cli.render import human_size
    from kiln.ops import images as ops

    if not force and not confirmed(state, _WARN_ALL if all_ else _WARN_DANGLING):
        return
    with state.context() as ctx:
        result = ops.prune(ctx, all=all_, filters=filters)
    if result.removed:
        state.echo("\n".join(i.removeprefix("sha256:") for i in result.removed))
    # stdout stays the removed IDs (as podman prints them); the space is for people
    state.echo(f"Total reclaimed space: {human_size(result.bytes_freed)}", err=True)
