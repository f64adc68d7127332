"""kiln run: run a command inside a working container."""

from __future__ import annotations

import click

from kiln.cli.commands._container_opts import build_run_options, run_options
from kiln.cli.commands._history_flag import add_history as history_wanted
from kiln.cli.commands._history_flag import add_history_option
from kiln.cli.state import State, pass_state


@click.command(
    "run",
    short_help="Run a command inside a working container",
    context_settings={"allow_interspersed_args": False},
)
@run_options
@add_history_option
@click.argument("container")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED, metavar="[--] COMMAND...")
@pass_state
def command(state: State, container, cmd, add_history, **kw):
    """Run COMMAND in CONTAINER; its output streams live and its exit code is kiln's."""
    from kiln.ops import containers as ops

    args = list(cmd)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise click.UsageError("a command to run is required after the container")
    opts = build_run_options(args, kw)
    with state.context(quiet=True) as ctx:
        code = ops.run_in_container(
            ctx, container, args, opts, add_history=history_wanted(add_history)
        )
    if code:
        # SystemExit, not click's Exit: the command's exit code must reach the shell as is
        raise SystemExit(code)
