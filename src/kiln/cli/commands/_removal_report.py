"""What ``kiln rmi`` and ``kiln manifest rm`` print and exit with, as podman's do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.cli.state import State, exit_with

if TYPE_CHECKING:
    from kiln.ops.images import RemoveResult

# podman rmi's exit codes
EXIT_NOT_FOUND = 1
EXIT_IN_USE = 2
EXIT_OTHER = 125


def report_removal(state: State, result: RemoveResult) -> None:
    """``Untagged:``/``Deleted:`` lines for what went, an ``Error:`` line for each name that
    failed; exit 1 when every failure is an unknown name, 2 when an image is in use, else 125."""
    from kiln.errors import Conflict, NotFound

    lines = [f"Untagged: {n}" for n in result.untagged]
    lines += [f"Deleted: {i.removeprefix('sha256:')}" for i in result.deleted]
    if lines:
        state.echo("\n".join(lines))
    if not result.errors:
        return
    for exc in result.errors:
        state.echo(f"Error: {exc}", err=True)
    if all(isinstance(e, NotFound) for e in result.errors):
        exit_with(EXIT_NOT_FOUND)
    if any(isinstance(e, Conflict) for e in result.errors):
        exit_with(EXIT_IN_USE)
    exit_with(EXIT_OTHER)
