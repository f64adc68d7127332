"""kiln bud: buildah's name for kiln build."""

from __future__ import annotations

from kiln.cli.commands.build import command

__all__ = ["command"]
