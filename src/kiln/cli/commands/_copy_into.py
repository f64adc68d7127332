"""``kiln copy`` and ``kiln add``: one command shape, COPY or ADD semantics into a working container."""

from __future__ import annotations

import click

from kiln.cli.commands._history_flag import add_history as history_wanted
from kiln.cli.commands._history_flag import add_history_option
from kiln.cli.state import State, pass_state


def copy_into_command(name: str, *, add: bool, short_help: str, help: str) -> click.Command:
    """The ``copy``/``add`` verb: ``add=True`` extracts local archives and fetches URLs."""

    @click.command(name, short_help=short_help, help=help)
    @click.argument("container")
    @click.argument("paths", nargs=-1, required=True, metavar="SRC... DEST")
    @click.option("--chown", default=None, metavar="USER[:GROUP]", help="Owner of the copied files")
    @click.option(
        "--chmod", default=None, metavar="MODE", help="Mode: octal (0644) or symbolic (u=rwX,go=rX)"
    )
    @click.option(
        "--from",
        "from_",
        default=None,
        metavar="IMAGE|CONTAINER",
        help="Copy from this image or container instead of the context",
    )
    @click.option(
        "--contextdir",
        default=None,
        metavar="DIR",
        help="Directory the sources must be in (default: host paths, relative to the "
        "current directory)",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Do not print the digest of the content")
    @add_history_option
    @pass_state
    def command(state: State, container, paths, chown, chmod, from_, contextdir, quiet,
                add_history):  # fmt: skip
        from kiln.ops import containers as ops

        if len(paths) < 2:
            raise click.UsageError("give at least one source and a destination")
        with state.context(quiet=True) as ctx:
            outcome = ops.copy_to_container(
                ctx,
                container,
                list(paths[:-1]),
                paths[-1],
                add=add,
                chown=chown,
                chmod=chmod,
                from_=from_,
                context_dir=contextdir,
                add_history=history_wanted(add_history),
            )
        if not quiet:
            state.echo(outcome.digest.removeprefix("sha256:"))

    return command
