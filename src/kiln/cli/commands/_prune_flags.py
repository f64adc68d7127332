"""The flags the prune verbs share (image, builder and system prune), and their question."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kiln.cli.state import State


def prune_flags(all_help: str, until_help: str = ""):
    """``-a``/``--all``, ``--filter until=TIME`` (repeatable; only with ``until_help``) and
    ``-f``/``--force``, in that order; the command receives ``all_``, ``filters``, ``force``."""
    options = [click.option("-a", "--all", "all_", is_flag=True, help=all_help)]
    if until_help:
        options.append(
            click.option(
                "--filter", "filters", multiple=True, metavar="until=TIME", help=until_help
            )
        )
    options.append(click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation"))

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def confirmed(state: State, warning: str) -> bool:
    """Print ``warning`` and ask, as podman's prune verbs do: only "y" or "yes" goes on; no
    answer at all (stdin at its end: a script without -f) is an error, as podman's EOF."""
    from kiln.errors import InvalidArgument

    state.echo(warning, err=True)
    state.echo("Are you sure you want to continue? [y/N] ", nl=False, err=True)
    answer = sys.stdin.readline()
    if not answer:
        state.echo("", err=True)  # the question's line ends before the error's
        raise InvalidArgument("no answer on standard input: give -f to prune without asking")
    return answer.strip().lower() in ("y", "yes")
