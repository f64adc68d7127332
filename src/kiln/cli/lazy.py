"""A click group whose sub-commands are the modules of a package, imported on use.

A verb is one file: ``kiln/cli/commands/<verb>.py`` defining ``command`` (a click
command). The file name is the verb (``_`` -> ``-``; a trailing ``_`` is dropped,
so ``import_.py`` is ``kiln import``). A sub-package is a nested group whose
``__init__`` defines ``command = LazyGroup(...)``. Nothing is imported until the
verb runs or help lists it, so ``kiln --help`` stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

import click

#: a verb that can name one module of the package: lower-case words joined by ``-``
_VERB = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def verb_name(module_name: str) -> str:
    return module_name.rstrip("_").replace("_", "-")


class LazyGroup(click.Group):
    def __init__(
        self,
        *args,
        package: str,
        aliases: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        """``aliases`` maps a verb of this group to ``"module:attr"`` elsewhere."""
        super().__init__(*args, **kwargs)
        self.package = package
        self.aliases = dict(aliases or {})
        self._table: dict[str, str] | None = None

    def command_table(self) -> dict[str, str]:
        """verb -> "module:attr", from the package's files and the aliases."""
        if self._table is None:
            import pkgutil  # start-up: only listing (help, an unknown verb) reads the package

            pkg = importlib.import_module(self.package)
            table: dict[str, str] = {}
            for info in pkgutil.iter_modules(pkg.__path__):
                if info.name.startswith("_"):
                    continue
                table[verb_name(info.name)] = f"{self.package}.{info.name}:command"
            for verb, target in self.aliases.items():
                table.setdefault(verb, target)
            self._table = table
        return self._table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.command_table()) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self._direct(cmd_name) or self.command_table().get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module_name), attr or "command")
        self.commands[cmd_name] = cmd
        return cmd

    def _direct(self, cmd_name: str) -> str | None:
        """The verb's target found without listing the package (what ``command_table``
        would give): a command runs one verb, and listing costs every start the import of
        pkgutil and a read of the package directory (~1.5 ms)."""
        if self._table is not None or cmd_name in self.aliases or not _VERB.fullmatch(cmd_name):
            return None
        base = cmd_name.replace("-", "_")
        for module in (f"{base}_", base):  # ``import_.py`` is ``kiln import``, as the table
            if importlib.util.find_spec(f"{self.package}.{module}") is not None:
                return f"{self.package}.{module}:command"
        return None

    def resolve_command(self, ctx, args):
        # click's message for an unknown verb, worded like podman's
        cmd_name = args[0] if args else ""
        if cmd_name and not cmd_name.startswith("-") and self.get_command(ctx, cmd_name) is None:
            where = ctx.command_path
            near = _near(cmd_name, self.list_commands(ctx))
            hint = "".join(f"\t{v}\n" for v in near)
            hint = f"\n\nDid you mean this?\n{hint}\n" if near else "\n"
            raise click.UsageError(
                f"unrecognized command `{where} {cmd_name}`{hint}"
                f"Try '{where} --help' for more information",
                ctx,
            )
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and not isinstance(cmd, click.Group):
            from kiln.cli.go_flags import expand_bare_flags

            rest = expand_bare_flags(cmd, rest)
        return name, cmd, rest


def _near(typed: str, verbs: list[str]) -> list[str]:
    """The verbs cobra would suggest for ``typed``: at most two edits away, or starting with it."""
    return [v for v in verbs if v.startswith(typed.lower()) or _edits(typed.lower(), v) <= 2]


def _edits(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions from ``a`` to ``b``."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
