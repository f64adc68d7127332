"""Flags of the verbs that write an image (build, commit): layer compression and --iidfile."""

from __future__ import annotations

import click

compression_option = click.option(
    "--compression",
    type=click.Choice(("gzip", "zstd", "none")),
    default="gzip",
    show_default=True,
    help="Layer compression",
)

iidfile_option = click.option(
    "--iidfile", default=None, metavar="FILE", help="Write the image ID to FILE"
)
