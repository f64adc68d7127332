"""kiln system leases: list the leases that keep in-flight work from GC."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("leases", short_help="List leases (work in flight that GC keeps)")
@format_option(help="Format output: json, or table (the default)")
@pass_state
def command(state: State, format_):
    """Each lease: its owner process, whether that process still runs, when it expires and
    what it holds. A stale one (owner gone, or expired) is removed by the next build, run,
    prune or `kiln system check --repair`."""
    import time
    from typing import Any

    from kiln.cli import render

    with state.context() as ctx:
        leases = ctx.store.list_leases()
    rows: list[dict[str, Any]] = [{"id": x.id, "owner": x.owner, "alive": x.alive, "created": x.created,
             "expires": x.expires, "images": x.images, "blobs": x.blobs, "stale": x.stale}
            for x in leases]  # fmt: skip
    if format_ == "json":
        state.echo(render.to_json(rows))
        return
    now = time.time()
    lines = [f"{'LEASE ID':<14}{'OWNER':<22}{'STATE':<10}{'EXPIRES IN':<12}{'IMAGES':<8}BLOBS"]
    for r in rows:
        state_ = "stale" if r["stale"] else "live"
        expires = f"{max(0, int(r['expires'] - now))}s"
        lines.append(f"{r['id'][:12]:<14}{r['owner'] or '-':<22}{state_:<10}{expires:<12}"
                     f"{r['images']:<8}{r['blobs']}")  # fmt: skip
    state.echo("\n".join(lines))
