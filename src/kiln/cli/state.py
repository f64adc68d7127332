"""What every verb gets from the global options, and the helpers verbs share.

A verb module looks like::

    @click.command("images", help="List images in local storage")
    @click.option(...)
    @pass_state
    def command(state: State, ...):
        from kiln.ops import images          # heavy imports inside the function
        with state.context() as ctx:
            rows = images.list_images(ctx)
        state.echo(render.table(...))
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from kiln.cli.stdout import write_stdout

if TYPE_CHECKING:
    from kiln.cli.render import EventRenderer
    from kiln.ops.context import Context


#: whether this process ends right after its command (the console script, see
#: ``kiln.cli.main.main``): then the store's databases leave their WAL to the next command
#: instead of checkpointing it at close (``kiln.util.sqlite.leave_wal_at_exit``)
_process_ends_with_command = False


def process_ends_with_command() -> None:
    global _process_ends_with_command
    _process_ends_with_command = True


class State:
    """The global CLI options of one invocation.

    A plain class, not a dataclass: every command creates it, and a dataclass's generated
    methods are compiled at import (~0.5 ms of a short command's CPU, for methods no one calls).
    """

    def __init__(self, root: str | None = None, log_level: str = "warn", debug: bool = False,
                 progress: str = "auto", tmpdir: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.root, self.log_level, self.debug = root, log_level, debug
        self.progress, self.tmpdir = progress, tmpdir
        self.extra: dict[str, Any] = {} if extra is None else extra

    def renderer(self, quiet: bool = False, progress: str | None = None) -> EventRenderer:
        from kiln.cli.render import EventRenderer

        return EventRenderer(progress or self.progress, quiet=quiet)

    @contextmanager
    def context(
        self, quiet: bool = False, progress: str | None = None, events: Any = None
    ) -> Iterator[Context]:
        """Open the store with this invocation's options; events render to the terminal."""
        from kiln.ops.config import Config
        from kiln.ops.context import open_context

        enter_user_namespace()
        if _process_ends_with_command:
            from kiln.util.sqlite import leave_wal_at_exit

            leave_wal_at_exit()
        renderer = events if events is not None else self.renderer(quiet, progress)
        config = Config.from_env(root=self.root, tmpdir=self.tmpdir)
        try:
            with open_context(config.root, events=renderer, config=config) as ctx:
                yield ctx
        finally:
            close = getattr(renderer, "close", None)
            if close is not None:
                close()

    @staticmethod
    def echo(text: str = "", nl: bool = True, err: bool = False) -> None:
        text += "\n" if nl and not text.endswith("\n") else ""
        if not err:
            write_stdout(text)
            return
        sys.stderr.write(text)
        sys.stderr.flush()


def enter_user_namespace() -> None:
    """A non-root user's kiln goes on in a user namespace of its own before it opens the
    store (see :mod:`kiln.runtime.userns`); root's is left as it is."""
    import os

    if os.geteuid() != 0:
        from kiln.runtime import userns

        userns.enter()


pass_state = click.make_pass_decorator(State, ensure=True)


def format_option(
    *,
    help: str = "Format output: json, table, or a Go template such as {{.ID}}",
    short: bool = False,
):
    """``--format``; ``short``: ``-f`` too, where podman's command has it (inspect, version,
    info: where ``-f`` is not ``--filter``)."""
    flags = ("-f", "--format") if short else ("--format",)
    return click.option(
        *flags, "format_", metavar="FORMAT", default="", help=help, callback=_json_format
    )


def _json_format(_ctx, _param, value: str) -> str:
    """``{{json .}}`` is ``json``, as podman reads it (report.IsJSON): the whole list, indented."""
    if "json" not in value:
        return value
    import re

    return "json" if re.fullmatch(r"\s*(json|\{\{\s*json\s*\.\s*\}\})\s*", value) else value


def progress_option(f):
    from kiln.cli.render import PROGRESS_MODES

    return click.option(
        "--progress",
        type=click.Choice(PROGRESS_MODES),
        default=None,
        help="Progress output: auto, tty, plain, json or quiet",
    )(f)


def exit_with(code: int) -> None:
    """End the command with ``code`` and no message (``kiln image exists``)."""
    raise click.exceptions.Exit(code)


__all__ = [
    "State",
    "enter_user_namespace",
    "exit_with",
    "format_option",
    "pass_state",
    "progress_option",
]
