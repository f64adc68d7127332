"""Flags that take an optional value, the way podman's (Go pflag) flags do.

``--layers``, ``--tls-verify`` and ``--pull`` may stand alone (``--layers`` means
``--layers=true``, ``--pull`` means ``--pull=always``) or carry a value after
``=``; a value is never taken from the next argument, so ``kiln build --layers
ctx`` keeps ``ctx`` as the context. Declare such an option with
``cls=OptionalValue, no_opt_default="true"``; the verb's group rewrites a bare
flag into ``--flag=<default>`` before click parses the arguments.
"""

from __future__ import annotations

import click


class OptionalValue(click.Option):
    def __init__(self, *args, no_opt_default: str = "true", **kwargs):
        super().__init__(*args, **kwargs)
        self.no_opt_default = no_opt_default


def expand_bare_flags(cmd: click.Command, args: list[str]) -> list[str]:
    """``args`` with every bare optional-value flag of ``cmd`` given its default."""
    defaults = {
        opt: p.no_opt_default
        for p in cmd.params
        if isinstance(p, OptionalValue)
        for opt in p.opts
        if opt.startswith("--")
    }
    if not defaults:
        return args
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        out.append(f"{arg}={defaults[arg]}" if arg in defaults else arg)
    return out
