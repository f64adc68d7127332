"""``--add-history[=BOOL]`` of kiln config, run, copy and add (buildah's): record a history
entry for what the command did; without the flag, ``$BUILDAH_HISTORY`` decides."""

from __future__ import annotations

import os

import click

from kiln.cli.go_flags import GO_BOOL, OptionalValue

add_history_option = click.option(
    "--add-history",
    type=GO_BOOL,
    cls=OptionalValue,
    default=None,
    help="Record a history entry for this (default $BUILDAH_HISTORY, else false)",
)


def add_history(given: bool | None) -> bool:
    """--add-history[=BOOL], else $BUILDAH_HISTORY ('true' or '1'), as buildah reads them."""
    if given is not None:
        return given
    return os.environ.get("BUILDAH_HISTORY", "").lower() in ("true", "1")
