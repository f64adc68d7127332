"""kiln builder prune: remove build cache (podman builder prune, buildah prune)."""

from __future__ import annotations

import sys

import click

from kiln.cli.state import State, pass_state

_WARN = "WARNING! This will remove all image build cache."
_WARN_DANGLING = "WARNING! This will remove dangling image build cache."


@click.command("prune", short_help="Remove the build cache")
@click.option(
    "-a", "--all", "all_", is_flag=True,
    help="Remove all build cache, and the RUN --mount=type=cache directories no build is using",
)  # fmt: skip
@click.option(
    "--filter", "filters", multiple=True, metavar="until=TIME",
    help="With --all, remove only what no build has used since TIME (a duration: 24h)",
)  # fmt: skip
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@pass_state
def command(state: State, all_, filters, force):
    """Remove build-cache entries whose image is gone (with --all: every entry, so the next
    build runs every step, and every unused cache-mount directory)."""
    from kiln.ops import builder as ops

    until = _until(filters)

    if not force:
        state.echo(_WARN if all_ else _WARN_DANGLING, err=True)
        state.echo("Are you sure you want to continue? [y/N] ", nl=False, err=True)
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
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


def _until(filters: tuple[str, ...]) -> float | None:
    from kiln.errors import InvalidArgument
    from kiln.ops.timefmt import parse_timestamp

    until = None
    for item in filters:
        key, _, value = item.partition("=")
        if key != "until":
            raise InvalidArgument(f'invalid filter "{item}": builder prune takes until=TIME')
        until = parse_timestamp(value)
        if until is None:
            raise InvalidArgument(f'invalid filter "{item}": use a duration (24h) or a time')
    return until
