"""kiln events: the store's image events, as `podman events` shows them."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("events", short_help="Show image events of every kiln on this store")
@click.option("--since", default=None, help="Show events since TIME (Unix seconds, RFC 3339, 10m)")
@click.option("--until", default=None, help="Stop at TIME (Unix seconds, RFC 3339, 10m)")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="type=image, event=ACTION, image=NAME|ID, scope=local",
)
@click.option(
    "--stream/--no-stream",
    default=True,
    help="Keep waiting for new events (default) or stop after the ones so far",
)
@format_option(help="json (one object per line, Docker's shape)")
@pass_state
def command(state: State, since, until, filters, stream, format_):
    """Print the image events (pull, push, tag, untag, delete, import, load, save, build)
    that any kiln process (CLI, ``kiln serve``, varlink) recorded on this store: those
    since --since, then new ones as they happen until --until or Ctrl-C."""
    import json
    import time

    from kiln.ops import image_events as ie

    if format_ not in ("", "json"):
        raise click.UsageError(f'unknown --format "{format_}": use json')
    start, end = ie.parse_time(since, "since"), ie.parse_time(until, "until")
    match = ie.EventFilter(filters)

    def show(ev) -> None:
        if format_ == "json":
            state.echo(json.dumps(ie.docker_json(ev)))
            return
        secs, nanos = divmod(ev.time_ns, 1_000_000_000)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs)) + f".{nanos:09d} +0000 UTC"
        shown = f" ({ev.name})" if ev.name and ev.name != ev.image else ""
        state.echo(f"{when} image {ev.action} {ev.image}{shown}")

    with state.context(quiet=True) as ctx:
        earlier, last = ie.past(ctx, start, end, match)
        for ev in earlier:
            show(ev)
        if not stream or (end is not None and end <= time.time()):
            return
        try:
            for ev in ie.follow(ctx, last, end, match):
                show(ev)
        except KeyboardInterrupt:
            return
