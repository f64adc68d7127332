"""kiln builder prune: remove build cache (podman builder prune, buildah prune)."""

from __future__ import annotations

import click

from kiln.cli.commands._prune_flags import confirmed, prune_flags
from kiln.cli.state import State, pass_state

_WARN = "WARNING! This will remove all image build cache."
_WARN_DANGLING = "WARNING! This will remove dangling image build cache."


@click.command("prune", short_help="Remove the build cache")
@prune_flags(
    "Remove all build cache, and the RUN --mount=type=cache directories no build is using",
    "With --all, remove only what no build has used since TIME (a duration: 24h)",
)
@pass_state
def command(state: State, all_, filters, force):
    """Remove build-cache entries whose image is gone (with --all: every entry, so the next
    build runs every step, and every unused cache-mount directory)."""
    from kiln.ops import builder as ops

    until = ops.prune_until(filters)
    if not force and not confirmed(state, _WARN if all_ else _WARN_DANGLING):
        return
    with state.context() as ctx:
        result = ops.prune_build_cache(ctx, all=all_, until=until)
    state.echo(
        f"Removed {result.cache_entries} build cache entries and "
        f"{result.cache_mounts} cache mount directories"
    )
    if result.cache_mount_bytes:
        from kiln.cli.render import human_size

        state.echo(f"Total reclaimed space: {human_size(result.cache_mount_bytes)}", err=True)
