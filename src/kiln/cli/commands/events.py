"""kiln events: the store's image events, as `podman events` shows them."""

from __future__ import annotations

import re
import time

import click

from kiln.cli.go_flags import GO_BOOL, OptionalValue
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
    "--stream",
    cls=OptionalValue,
    type=GO_BOOL,
    default=True,
    metavar="[=BOOL]",
    help="Keep waiting for new events (default); --stream=false stops after the ones so far",
)
@click.option("--no-stream", "no_stream", is_flag=True, help="The same as --stream=false")
@format_option(
    help="json (one object per line, Docker's shape) or a Go template of podman's fields "
    "({{.Time}} {{.Type}} {{.Status}} {{.ID}} {{.Name}} {{.Attributes}})"
)
@pass_state
def command(state: State, since, until, filters, stream, no_stream, format_):
    """Print the image events (pull, push, tag, untag, delete, import, load, save, build)
    that any kiln process (CLI, ``kiln serve``, varlink) recorded on this store: those
    since --since, then new ones as they happen until --until or Ctrl-C."""
    import json
    import time

    from kiln.cli.go_template import compile_template
    from kiln.ops import image_events as ie

    stream = stream and not no_stream
    template = compile_template(format_) if format_ not in ("", "json") else None
    start, end = ie.parse_time(since, "since"), ie.parse_time(until, "until")
    if start is None and not stream:  # podman: --stream=false alone lists the whole journal
        start = 0.0
    match = ie.EventFilter(filters)

    def show(ev) -> None:
        if format_ == "json":
            state.echo(json.dumps(ie.docker_json(ev)))
            return
        row = _podman_fields(ev)
        if template is not None:
            state.echo(template(row))
            return
        # podman's line for an image event: time, type, status, ID, name
        state.echo(f"{row['Time'].go} image {row['Status']} {row['ID']} {row['Name']}")

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


def _podman_fields(ev) -> dict:
    """An event as podman's ``events --format`` template sees it (its events.Event)."""
    from kiln.cli.go_template import GoTime
    from kiln.ops import image_events as ie

    secs, nanos = divmod(ev.time_ns, 1_000_000_000)
    day = time.strftime("%Y-%m-%d", time.gmtime(secs))
    clock = time.strftime("%H:%M:%S", time.gmtime(secs))
    rfc = f"{day}T{clock}.{nanos:09d}Z"
    # the journal holds an ID or, for some actions (pull, save, untag), the reference itself
    image_id = ev.image.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", image_id):
        image_id = ""  # podman's ID is empty where it has none (a pull)
    return {
        "ID": image_id,
        "Image": "",
        "Name": ev.name or ev.image,
        "Status": ie.LIBPOD_ACTIONS.get(ev.action, ev.action),
        "Time": GoTime(rfc, f"{day} {clock}.{nanos:09d} +0000 UTC"),
        "Type": "image",
        "Attributes": dict(ev.attributes),  # Go prints a nil map as map[]
    }
