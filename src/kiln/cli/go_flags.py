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


class GoBool(click.types.BoolParamType):
    """A boolean as pflag reads it, ``-H=false`` included (click hands a short option's
    ``=false`` over with its ``=``)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            value = value.removeprefix("=")
        return super().convert(value, param, ctx)


GO_BOOL = GoBool()


# strconv.ParseBool's words, which pflag's boolean flags take after "="
_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def expand_bare_flags(cmd: click.Command, args: list[str]) -> list[str]:
    """``args`` with every bare optional-value flag of ``cmd`` given its default, and every
    boolean flag given a value as pflag takes one (``--no-cache=true``, ``--rm=false``,
    ``-q=1``) in click's form. Not rewritten: what follows ``--``, an option's value, and,
    for a command whose options end at its first argument (``kiln run``), what follows it."""
    defaults = {
        opt: p.no_opt_default
        for p in cmd.params
        if isinstance(p, OptionalValue)
        for opt in p.opts
        if opt.startswith("--")
    }
    flags = _bool_flag_forms(cmd)
    takes_value = {
        opt
        for p in cmd.params
        if isinstance(p, click.Option) and not p.is_flag and not isinstance(p, OptionalValue)
        for opt in p.opts
    }
    stop_at_argument = not cmd.context_settings.get("allow_interspersed_args", True)
    out: list[str] = []
    value_next = False
    for i, arg in enumerate(args):
        if value_next:
            out.append(arg)
            value_next = False
            continue
        if arg == "--" or (stop_at_argument and not arg.startswith("-")):
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if arg in defaults:
            out.append(f"{arg}={defaults[arg]}")
        elif eq and name in flags and value in _TRUE | _FALSE:
            out.extend(flags[name][value in _TRUE])
        else:
            out.append(arg)
            value_next = arg in takes_value
    return out


def _bool_flag_forms(cmd: click.Command) -> dict[str, tuple[list[str], list[str]]]:
    """Each boolean flag's spellings -> (the arguments meaning false, those meaning true); a
    flag with no spelling of false (no ``--no-x``) means false by its absence, unless its
    absence means something else: a tri-state flag (default None, "not given") is left to
    click, which refuses a value after ``=``."""
    forms: dict[str, tuple[list[str], list[str]]] = {}
    for p in cmd.params:
        if not (isinstance(p, click.Option) and p.is_flag and p.is_bool_flag):
            continue
        off = p.secondary_opts[:1]
        if not off and p.default is not False:
            continue  # absence is not false here (on by default, or unset): click's error stays
        for opt in p.opts:
            forms[opt] = (off, [opt])
        for opt in p.secondary_opts:
            forms[opt] = ([p.opts[0]], [opt])
    return forms


def skip_long_lookup_of_short_options() -> None:
    """Make click parse ``-t x`` without first trying ``-t`` as a long option.

    click tries every ``-x`` argument as a long option first and, when there is none,
    builds a ``NoSuchOption`` (importing difflib for suggestions and looking up gettext
    catalogs for its message) only to catch it and parse a short option: every ``kiln
    build -q -t NAME -f FILE`` paid that at start-up. The patched step goes straight to
    the short-option parsing in exactly that case (not a ``--`` argument, not a known
    long option), so what is accepted and every error stay click's. A click without these
    internals is left alone."""
    import click.parser as cp

    parser = getattr(cp, "_OptionParser", None) or getattr(cp, "OptionParser", None)
    normalize = getattr(cp, "_normalize_opt", None) or getattr(cp, "normalize_opt", None)
    original = getattr(parser, "_process_opts", None)
    if parser is None or normalize is None or original is None:
        return
    if getattr(original, "_kiln_short_first", False):
        return

    def _process_opts(self, arg, state):
        if arg[:2] not in self._opt_prefixes:
            name = normalize(arg.split("=", 1)[0], self.ctx)
            if name not in self._long_opt:
                self._match_short_opt(arg, state)
                return
        original(self, arg, state)

    # a mark on the function so a second patch of the same parser is seen and skipped
    _process_opts._kiln_short_first = True  # type: ignore[attr-defined]
    parser._process_opts = _process_opts
