"""Typed Dockerfile instructions.

``instructions_from_nodes`` turns parser nodes into frozen dataclasses with
their flags parsed and checked.  Expansion is a capability an instruction opts
into: the classes Docker expands (ADD, ARG defaults, COPY, ENV, EXPOSE, FROM,
LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, and RUN's ``--mount`` values) define
``expand(lex, env) -> (instruction, used_names)``; RUN, CMD, ENTRYPOINT,
HEALTHCHECK and SHELL are passed on unexpanded, as in Docker.  ONBUILD triggers
are expanded when they run in a child build.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kiln.build.flags import FlagKind, bool_flag, parse_flags, string_flag, strings_flag
from kiln.build.lexer import ShellLex
from kiln.build.parser import Node
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.timefmt import parse_go_duration

if TYPE_CHECKING:
    from kiln.build.heredoc import Heredoc, HeredocMarker
    from kiln.build.mounts import Mount

__all__ = [
    "Add", "Arg", "Cmd", "Copy", "Entrypoint", "Env", "Expose", "From", "Healthcheck",
    "Instruction", "Label", "Maintainer", "Onbuild", "Run", "Shell", "StopSignal", "User",
    "Volume", "Workdir", "instruction_from_node", "instructions_from_nodes",
]  # fmt: skip

S, B, M = FlagKind.STRING, FlagKind.BOOL, FlagKind.STRINGS
_STAGE_NAME = lazy_pattern(r"^[a-z][a-z0-9\-_.]*$")
_NETWORKS = ("default", "none", "host")
_SECURITY = ("sandbox", "insecure")
#: ``--exclude`` patterns of one COPY/ADD: each is matched against every path the copy
#: walks (about a microsecond a pattern a path), so a Dockerfile of 2 MiB of them would
#: spend hours on a modest tree; real instructions use a handful
MAX_EXCLUDES = 1024


class _Expander:
    """Expands words with one lexer and env, collecting the names used."""

    def __init__(self, lex: ShellLex, env: Mapping[str, str]) -> None:
        self.lex, self.env, self.used = lex, env, set[str]()

    def word(self, text: str) -> str:
        value, used = self.lex.process_word_with_matches(text, self.env)
        self.used |= used
        return value

    def opt(self, text: str | None) -> str | None:
        return None if text is None else self.word(text)

    def words(self, text: str) -> list[str]:
        exp = self.lex.expand(text, self.env)
        self.used |= exp.matched
        return list(exp.words)


# start-up: the abstract bases (Instruction, _ExecForm, _CopyBase, _Pairs, _OneWord) are never
# instantiated; each concrete subclass generates its own __init__/__repr__/__eq__/__hash__, so the
# bases skip theirs (each generated method is one `exec` while `kiln build` imports this module).
@dataclass(frozen=True, init=False, repr=False, eq=False)
class Instruction:
    """One Dockerfile instruction: its line and text as written."""

    line: int
    original: str

    @property
    def name(self) -> str:
        return type(self).__name__.upper()

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Instruction, set[str]]:
        """Instructions Docker does not expand come back unchanged."""
        return self, set()


@dataclass(frozen=True)
class From(Instruction):
    """A FROM instruction."""

    base: str
    stage_name: str | None = None
    platform: str | None = None

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[From, set[str]]:
        x = _Expander(lex, env)
        new = dataclasses.replace(self, base=x.word(self.base), platform=x.opt(self.platform))
        if not new.base:
            raise InvalidArgument(f"base name ({self.base}) should not be blank")
        return new, x.used


@dataclass(frozen=True)
class Run(Instruction):
    """A RUN instruction."""

    command: tuple[str, ...]  # shell form: one string
    prepend_shell: bool = True
    mounts: tuple[Mount, ...] = ()
    mount_specs: tuple[str, ...] = ()
    network: str = "default"
    security: str = "sandbox"
    heredocs: tuple[Heredoc, ...] = ()

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Run, set[str]]:
        x = _Expander(lex, env)
        mounts = _parse_mounts(self.mount_specs, x.word)
        return dataclasses.replace(self, mounts=mounts), x.used


@dataclass(frozen=True, init=False, repr=False, eq=False)
class _ExecForm(Instruction):
    """CMD or ENTRYPOINT."""

    command: tuple[str, ...]
    prepend_shell: bool = False


@dataclass(frozen=True)
class Cmd(_ExecForm):
    """A CMD instruction."""


@dataclass(frozen=True)
class Entrypoint(_ExecForm):
    """An ENTRYPOINT instruction."""


@dataclass(frozen=True)
class Shell(Instruction):
    """A SHELL instruction."""

    shell: tuple[str, ...]


@dataclass(frozen=True, init=False, repr=False, eq=False)
class _CopyBase(Instruction):
    """COPY or ADD."""

    sources: tuple[str, ...]
    dest: str
    contents: tuple[Heredoc, ...] = ()  # heredoc sources (name = file name)
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()

    def _expand_common(self, x: _Expander) -> dict[str, Any]:
        contents = tuple(
            dataclasses.replace(h, body=x.word(h.body)) if h.expand else h for h in self.contents
        )
        chmod = x.opt(self.chmod)
        _check_chmod(chmod)
        # a destination that expands to nothing (COPY f $UNSET) is the working directory,
        # as buildah and BuildKit take it
        return {
            "sources": tuple(x.word(s) for s in self.sources),
            "dest": x.word(self.dest) or ".",
            "contents": contents,
            "chown": x.opt(self.chown),
            "chmod": chmod,
            "excludes": tuple(x.word(e) for e in self.excludes),
        }


@dataclass(frozen=True)
class Copy(_CopyBase):
    """A COPY instruction."""

    from_: str | None = None
    parents: bool = False

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Copy, set[str]]:
        x = _Expander(lex, env)
        changes = self._expand_common(x)
        return dataclasses.replace(self, from_=x.opt(self.from_), **changes), x.used


@dataclass(frozen=True)
class Add(_CopyBase):
    """An ADD instruction."""

    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Add, set[str]]:
        x = _Expander(lex, env)
        changes = self._expand_common(x)
        return dataclasses.replace(self, checksum=x.opt(self.checksum), **changes), x.used


@dataclass(frozen=True, init=False, repr=False, eq=False)
class _Pairs(Instruction):
    """ENV or LABEL."""

    pairs: tuple[tuple[str, str], ...]

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[_Pairs, set[str]]:
        x = _Expander(lex, env)
        pairs = tuple((x.word(k), x.word(v)) for k, v in self.pairs)
        return dataclasses.replace(self, pairs=pairs), x.used


@dataclass(frozen=True)
class Env(_Pairs):
    """An ENV instruction."""


@dataclass(frozen=True)
class Label(_Pairs):
    """A LABEL instruction."""


@dataclass(frozen=True)
class Arg(Instruction):
    """An ARG instruction."""

    args: tuple[tuple[str, str | None], ...]  # (name, default or None)

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Arg, set[str]]:
        x = _Expander(lex, env)
        args = tuple((k, x.opt(v)) for k, v in self.args)
        return dataclasses.replace(self, args=args), x.used


@dataclass(frozen=True)
class Expose(Instruction):
    """An EXPOSE instruction."""

    ports: tuple[str, ...]

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Expose, set[str]]:
        x = _Expander(lex, env)
        ports = [p for raw in self.ports for p in x.words(raw)]
        if not ports:  # EXPOSE $UNSET: as buildah refuses it (BuildKit exposes nothing)
            raise InvalidArgument("EXPOSE requires at least one argument")
        return dataclasses.replace(self, ports=tuple(_check_port(p) for p in ports)), x.used


@dataclass(frozen=True)
class Volume(Instruction):
    """A VOLUME instruction."""

    paths: tuple[str, ...]

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[Volume, set[str]]:
        x = _Expander(lex, env)
        paths = tuple(x.word(p) for p in self.paths)
        if any(not p.strip() for p in paths):
            raise InvalidArgument("VOLUME specified can not be an empty string")
        return dataclasses.replace(self, paths=paths), x.used


@dataclass(frozen=True, init=False, repr=False, eq=False)
class _OneWord(Instruction):
    """An instruction with one word: WORKDIR, USER or STOPSIGNAL."""

    value: str

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[_OneWord, set[str]]:
        x = _Expander(lex, env)
        return dataclasses.replace(self, value=x.word(self.value)), x.used


@dataclass(frozen=True)
class Workdir(_OneWord):
    """A WORKDIR instruction."""


@dataclass(frozen=True)
class User(_OneWord):
    """A USER instruction."""


@dataclass(frozen=True)
class StopSignal(_OneWord):
    """A STOPSIGNAL instruction."""

    def expand(self, lex: ShellLex, env: Mapping[str, str]) -> tuple[StopSignal, set[str]]:
        expanded, used = super().expand(lex, env)
        if not expanded.value:  # STOPSIGNAL $UNSET, refused as buildah and BuildKit do
            raise InvalidArgument("STOPSIGNAL: invalid signal: it is empty")
        return dataclasses.replace(self, value=expanded.value), used


@dataclass(frozen=True)
class Maintainer(Instruction):
    """A MAINTAINER instruction."""

    maintainer: str


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """A HEALTHCHECK instruction."""

    test: tuple[str, ...]  # ("NONE",), ("CMD", ...), ("CMD-SHELL", cmd)
    interval: int = 0  # nanoseconds, 0 = inherit/default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Onbuild(Instruction):
    """An ONBUILD instruction."""

    expression: str  # the trigger as written, stored in the image config
    trigger: Instruction


# -- helpers -------------------------------------------------------------------


def _check_chmod(chmod: str | None, where: str = "") -> None:
    """Octal or symbolic (``kiln.container.chmod``); checked again once args expand.

    ``where`` (``Dockerfile:N``) prefixes the error when parsing; an expansion's error
    gets it from the stage (``StageRun.at_line``)."""
    if chmod is not None and "$" not in chmod:
        # start-up: --chmod is rare
        from kiln.container.chmod import parse_chmod

        try:
            parse_chmod(chmod)
        except InvalidArgument as exc:
            if not where:
                raise
            raise InvalidArgument(f"{where}: {exc}") from None


_PORT = lazy_pattern(r"^(\d+)(?:-(\d+))?(?:/([a-zA-Z]+))?$")


def _check_port(port: str) -> str:
    match = _PORT().match(port)
    if not match:
        raise InvalidArgument(f"invalid containerPort: {port.split('/')[0]}")
    # the protocol is kept as written (``80/TCP`` stays), as buildah keeps it; BuildKit
    # lowercases it. podman reads it case-insensitively.
    proto = match.group(3) or "tcp"
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {match.group(3)}")
    for number in filter(None, (match.group(1), match.group(2))):
        if not 0 <= int(number) <= 65535:
            raise InvalidArgument(f"invalid containerPort: {number}")
    ports = match.group(1) + (f"-{match.group(2)}" if match.group(2) else "")
    return f"{ports}/{proto}"


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (non-negative), in nanoseconds."""
    if text == "":
        return 0
    nanos = parse_go_duration(text)
    if nanos is None or nanos < 0:
        raise InvalidArgument(f"time: invalid duration {text!r}")
    return nanos


# -- conversion ----------------------------------------------------------------

Builder = Callable[[Node, dict, str], Instruction]


def _where(node: Node, name: str) -> str:
    return f"{name}:{node.line}"


def _at_least(node: Node, count: int, where: str) -> tuple[str, ...]:
    """``node``'s arguments, refused when fewer than ``count`` are non-empty."""
    if len([a for a in node.args if a != ""]) < count:
        words = {1: "at least one argument", 2: "at least two arguments"}[count]
        raise InvalidArgument(f"{where}: {node.instruction} requires {words}")
    return node.args


def _exactly_one(node: Node, where: str) -> str:
    if len(node.args) != 1 or not node.args[0].strip():
        raise InvalidArgument(f"{where}: {node.instruction} requires exactly one argument")
    return node.args[0]


def _from(node: Node, flags: dict, where: str) -> From:
    args = node.args
    if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
        raise InvalidArgument(f"{where}: FROM requires either one or three arguments")
    name = None
    if len(args) == 3:
        name = args[2].lower()
        if not _STAGE_NAME().match(name):
            raise InvalidArgument(
                f'{where}: invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols"
            )
    return From(node.line, node.original, args[0], name, string_flag(flags, "platform"))


def _run(node: Node, flags: dict, where: str) -> Run:
    _at_least(node, 1, where)
    network = string_flag(flags, "network") or "default"
    if network not in _NETWORKS:
        raise InvalidArgument(f"{where}: unsupported network mode {network!r}")
    security = string_flag(flags, "security") or "sandbox"
    if security not in _SECURITY:
        raise InvalidArgument(f"{where}: unsupported security mode {security!r}")
    specs = strings_flag(flags, "mount")
    try:
        mounts = _parse_mounts(specs)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    return Run(
        node.line, node.original, tuple(node.args), not node.json_form, mounts, specs,
        network, security, node.heredocs,
    )  # fmt: skip


def _parse_mounts(
    specs: tuple[str, ...], expand: Callable[[str], str] | None = None
) -> tuple[Mount, ...]:
    """RUN's ``--mount`` values parsed (``expand``: with the build args expanded)."""
    if not specs:
        return ()
    # start-up: most RUNs have no --mount
    from kiln.build.mounts import parse_mount

    return tuple(parse_mount(spec, expand) for spec in specs)


def _exec_form(cls: type[Cmd | Entrypoint]) -> Builder:
    def build(node: Node, flags: dict, where: str) -> Instruction:
        return cls(node.line, node.original, tuple(node.args), not node.json_form)

    return build


def _shell(node: Node, flags: dict, where: str) -> Shell:
    if not node.json_form:
        raise InvalidArgument(f"{where}: SHELL requires the arguments to be in JSON form")
    _at_least(node, 1, where)
    return Shell(node.line, node.original, tuple(node.args))


def _split_sources(node: Node, where: str) -> tuple[tuple[str, ...], tuple[Heredoc, ...], str]:
    if len(node.args) < 2:  # an empty JSON destination (COPY ["f", ""]) counts: the workdir
        raise InvalidArgument(f"{where}: {node.instruction} requires at least two arguments")
    *sources, dest = node.args
    by_name = {h.name: h for h in node.heredocs}
    paths, contents = [], []
    for src in sources:
        markers: list[HeredocMarker] = []
        if not node.json_form and "<<" in src:
            # start-up: heredocs are read only where a Dockerfile has one
            from kiln.build.heredoc import heredoc_markers

            markers = heredoc_markers(src)
        if markers and markers[0].name in by_name:
            contents.append(by_name[markers[0].name])
        else:
            paths.append(src)
    return tuple(paths), tuple(contents), dest


def _copy(node: Node, flags: dict, where: str) -> Copy:
    sources, contents, dest = _split_sources(node, where)
    chmod = string_flag(flags, "chmod")
    _check_chmod(chmod, where)
    return Copy(
        node.line, node.original, sources, dest, contents, string_flag(flags, "chown"), chmod,
        bool_flag(flags, "link"), _excludes(flags, where), string_flag(flags, "from"),
        bool_flag(flags, "parents"),
    )  # fmt: skip


def _excludes(flags: dict, where: str) -> tuple[str, ...]:
    excludes = strings_flag(flags, "exclude")
    if len(excludes) > MAX_EXCLUDES:
        raise InvalidArgument(
            f"{where}: {len(excludes)} --exclude patterns; at most {MAX_EXCLUDES} are taken: "
            "exclude a directory, or use ** (--exclude=**/*.log)"
        )
    return excludes


def _add(node: Node, flags: dict, where: str) -> Add:
    sources, contents, dest = _split_sources(node, where)
    chmod = string_flag(flags, "chmod")
    _check_chmod(chmod, where)
    unpack = flags.get("unpack")
    return Add(
        node.line, node.original, sources, dest, contents, string_flag(flags, "chown"), chmod,
        bool_flag(flags, "link"), _excludes(flags, where), string_flag(flags, "checksum"),
        bool_flag(flags, "keep-git-dir"), unpack if isinstance(unpack, bool) else None,
    )  # fmt: skip


def _pairs(node: Node, where: str) -> tuple[tuple[str, str], ...]:
    if not node.args:
        raise InvalidArgument(f"{where}: {node.instruction} requires at least one argument")
    if len(node.args) % 2:
        raise InvalidArgument(f"{where}: Bad input to {node.instruction}, too many arguments")
    pairs = tuple(zip(node.args[0::2], node.args[1::2], strict=True))
    if any(not k for k, _ in pairs):
        raise InvalidArgument(f"{where}: {node.instruction} names can not be blank")
    return pairs


def _arg(node: Node, flags: dict, where: str) -> Arg:
    _at_least(node, 1, where)
    args = []
    for word in node.args:
        key, has_value, value = word.partition("=")
        if not key:
            raise InvalidArgument(f"{where}: ARG names can not be blank")
        args.append((key, value if has_value else None))
    return Arg(node.line, node.original, tuple(args))


def _healthcheck(node: Node, flags: dict, where: str) -> Healthcheck:
    _at_least(node, 1, where)
    kind = node.args[0].upper()
    if kind == "NONE":
        if len(node.args) > 1 or flags:
            raise InvalidArgument(f"{where}: HEALTHCHECK NONE takes no arguments")
        return Healthcheck(node.line, node.original, ("NONE",))
    if kind != "CMD":
        raise InvalidArgument(f'{where}: Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    rest = tuple(node.args[1:])
    if not rest or not rest[0]:
        raise InvalidArgument(f"{where}: Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json_form else ("CMD-SHELL", rest[0])
    times = {}
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        text = string_flag(flags, flag)
        try:
            value = parse_duration(text) if text else 0
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        if 0 < value < 10**6:
            raise InvalidArgument(f"{where}: {flag.title()} {text!r} cannot be less than 1ms")
        times[flag.replace("-", "_")] = value
    retries_text = string_flag(flags, "retries")
    retries = 0
    if retries_text:
        try:
            retries = int(retries_text)
        except ValueError:
            raise InvalidArgument(f"{where}: invalid --retries value: {retries_text}") from None
        if retries < 0:
            raise InvalidArgument(f"{where}: --retries cannot be negative ({retries})")
    return Healthcheck(node.line, node.original, test, retries=retries, **times)


def _onbuild(node: Node, flags: dict, where: str, name: str) -> Onbuild:
    inner = node.inner
    if inner is None:
        raise InvalidArgument(f"{where}: ONBUILD requires at least one argument")
    if inner.instruction == "ONBUILD":
        raise InvalidArgument(f"{where}: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner.instruction in ("FROM", "MAINTAINER"):
        raise InvalidArgument(f"{where}: {inner.instruction} isn't allowed as an ONBUILD trigger")
    trigger = instruction_from_node(inner, name)
    expression = node.original.split(None, 1)[1] if " " in node.original.strip() else ""
    return Onbuild(node.line, node.original, expression.strip(), trigger)


_FLAGS: dict[str, dict[str, FlagKind]] = {
    "FROM": {"platform": S},
    "RUN": {"mount": M, "network": S, "security": S},
    "COPY": {"from": S, "chown": S, "chmod": S, "link": B, "exclude": M, "parents": B},
    "ADD": {
        "chown": S, "chmod": S, "link": B, "exclude": M, "checksum": S, "keep-git-dir": B,
        "unpack": B,
    },
    "HEALTHCHECK": {
        "interval": S, "timeout": S, "start-period": S, "start-interval": S, "retries": S,
    },
}  # fmt: skip

_BUILDERS: dict[str, Builder] = {
    "FROM": _from,
    "RUN": _run,
    "CMD": _exec_form(Cmd),
    "ENTRYPOINT": _exec_form(Entrypoint),
    "SHELL": _shell,
    "COPY": _copy,
    "ADD": _add,
    "ENV": lambda n, f, w: Env(n.line, n.original, _pairs(n, w)),
    "LABEL": lambda n, f, w: Label(n.line, n.original, _pairs(n, w)),
    "ARG": _arg,
    "EXPOSE": lambda n, f, w: Expose(n.line, n.original, _at_least(n, 1, w)),
    "VOLUME": lambda n, f, w: Volume(n.line, n.original, _at_least(n, 1, w)),
    "WORKDIR": lambda n, f, w: Workdir(n.line, n.original, _exactly_one(n, w)),
    "USER": lambda n, f, w: User(n.line, n.original, _exactly_one(n, w)),
    "STOPSIGNAL": lambda n, f, w: StopSignal(n.line, n.original, _exactly_one(n, w)),
    "MAINTAINER": lambda n, f, w: Maintainer(n.line, n.original, _exactly_one(n, w)),
    "HEALTHCHECK": _healthcheck,
}


def instruction_from_node(node: Node, name: str = "Dockerfile") -> Instruction:
    """Convert one parser node; ``name`` (the Dockerfile's name) prefixes errors."""
    where = _where(node, name)
    flags = parse_flags(node.flags, _FLAGS.get(node.instruction, {}), where)
    if node.instruction == "ONBUILD":
        return _onbuild(node, flags, where, name)
    builder = _BUILDERS.get(node.instruction)
    if builder is None:
        raise InvalidArgument(f"{where}: unknown instruction: {node.instruction}")
    return builder(node, flags, where)


def instructions_from_nodes(nodes: list[Node], name: str = "Dockerfile") -> list[Instruction]:
    return [instruction_from_node(node, name) for node in nodes]
