"""Dockerfile parser: an adapter over the ``dockerfile`` package (BuildKit's Go parser).

It turns the package's ``Command`` tuples into ``Node`` values with upper-case
instruction names, the heredoc details the package leaves out (see
``kiln.build.heredoc``), parsed ``ONBUILD`` triggers, and the parser
directives at the top of the file (``# syntax=``, ``# escape=``, ``# check=``).
Errors are ``InvalidArgument`` and name the file and line.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
from dataclasses import field
from typing import TYPE_CHECKING, Any, TextIO

import dockerfile

from kiln.errors import InvalidArgument, NotFound
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.build.heredoc import Heredoc

__all__ = [
    "KNOWN_INSTRUCTIONS",
    "Node",
    "ParsedDockerfile",
    "parse_file",
    "parse_string",
    "read_capped",
    "read_dockerfile",
]

KNOWN_INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip
DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
NO_INSTRUCTIONS = "the Dockerfile has no instructions"

# Caps for Dockerfiles nobody reviewed (issue: hostile inputs). Real Dockerfiles are a
# few kB with tens of instructions; these keep a hostile one to seconds and megabytes:
# the Go parser is quadratic in the lines of one instruction, and every ENV step copies
# the environment of the one before it.
MAX_DOCKERFILE_BYTES = 2 * 1024 * 1024
MAX_INSTRUCTIONS = 5000
MAX_LINES_PER_INSTRUCTION = 10_000
MAX_LINE_BYTES = 65535  # the Go parser's (bufio.Scanner's) longest line


@dataclass(frozen=True)
class Node:
    """One instruction as written.

    ``args`` are the parser's words (json form: the decoded list); ``original``
    is the instruction line without heredoc bodies; ``inner`` is the trigger of
    an ``ONBUILD``.
    """

    instruction: str
    args: tuple[str, ...]
    flags: tuple[str, ...] = ()
    json_form: bool = False
    original: str = ""
    line: int = 0
    end_line: int = 0
    heredocs: tuple[Heredoc, ...] = ()
    inner: Node | None = None


@dataclass(frozen=True)
class ParsedDockerfile:
    """A Dockerfile's parser directives and instruction nodes."""

    directives: dict[str, str]
    nodes: list[Node]
    name: str = "Dockerfile"
    escape: str = "\\"
    syntax: str | None = field(default=None)


def parse_directives(text: str) -> dict[str, str]:
    """Directives at the very top; the first other line (even blank) ends them."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if not match:
            break
        key = match.group(1).lower()
        if key not in DIRECTIVES:
            break
        if key in found:
            raise InvalidArgument(f"only one {key} parser directive can be used")
        found[key] = match.group(2)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise InvalidArgument(f"invalid escape token {escape} does not match ` or \\")
    return found


def parse_file(path: str | os.PathLike[str], name: str | None = None) -> ParsedDockerfile:
    return parse_string(read_dockerfile(path), name=name or os.path.basename(os.fspath(path)))


def read_dockerfile(path: str | os.PathLike[str]) -> str:
    """The text of a Dockerfile, refused past ``MAX_DOCKERFILE_BYTES`` (a FIFO or a
    device named with ``-f`` is read only that far)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return read_capped(fh, os.fspath(path))
    except FileNotFoundError as exc:
        raise NotFound(f"Dockerfile {os.fspath(path)!s} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read Dockerfile {os.fspath(path)!s}: {exc}") from exc


def read_capped(fh: TextIO, name: str) -> str:
    """Read a Dockerfile from a text stream (a file, stdin), at most the size cap."""
    text = fh.read(MAX_DOCKERFILE_BYTES + 1)
    _check_size(text, name)
    return text


def _check_size(text: str, name: str) -> None:
    if len(text) > MAX_DOCKERFILE_BYTES:
        raise InvalidArgument(
            f"{name} is over the {MAX_DOCKERFILE_BYTES // (1024 * 1024)} MiB Dockerfile size limit"
        )


def _check_continuations(text: str, escape: str, name: str) -> None:
    run = 0
    for number, line in enumerate(text.splitlines(), 1):
        run = run + 1 if line.rstrip().endswith(escape) else 0
        if run >= MAX_LINES_PER_INSTRUCTION:
            raise InvalidArgument(
                f"{name}:{number - run + 1}: an instruction continued over more than "
                f"{MAX_LINES_PER_INSTRUCTION} lines: refused"
            )


def parse_string(text: str, name: str = "Dockerfile") -> ParsedDockerfile:
    """Parse Dockerfile text into directives and nodes."""
    text = text.removeprefix("\ufeff")
    try:
        directives = parse_directives(text)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{name}: {exc}") from None
    escape = directives.get("escape", "\\")
    _check_size(text, name)
    _check_continuations(text, escape, name)
    commands = _go_parse(text, name)
    if len(commands) > MAX_INSTRUCTIONS:
        raise InvalidArgument(
            f"{name} has {len(commands)} instructions, over the limit of {MAX_INSTRUCTIONS}"
        )
    lines = text.splitlines()
    nodes = []
    for cmd in commands:
        nodes.append(_node(cmd, lines, escape, name))
    if not nodes:
        raise InvalidArgument(NO_INSTRUCTIONS)
    return ParsedDockerfile(
        directives=directives,
        nodes=nodes,
        name=name,
        escape=escape,
        syntax=directives.get("syntax"),
    )


def _go_parse(text: str, name: str) -> list[dockerfile.Command]:
    try:
        commands = list(dockerfile.parse_string(text))
    except dockerfile.GoParseError as exc:
        message = str(exc)
        if "no instructions" in message:
            # the Go scanner stops at a line of 64 KiB or more; before the first
            # instruction that read as an empty file, not as the line it is
            long = _first_long_line(text)
            if long is not None:
                raise InvalidArgument(
                    f"{name}:{long}: dockerfile line greater than max allowed size of"
                    f" {MAX_LINE_BYTES}"
                ) from None
            raise InvalidArgument(NO_INSTRUCTIONS) from None
        line = _failing_line(text)
        where = f"{name}:{line}" if line else name
        raise InvalidArgument(f"{where}: {message}") from None
    commands_leak, heredocs_leak = _leaked_fields()
    for cmd in commands:
        _release(cmd, commands_leak)
        for heredoc in cmd.heredocs if "heredocs" in cmd._fields else ():
            _release(heredoc, heredocs_leak)
    return commands


# The ``dockerfile`` package (3.4.0) keeps one reference too many to each string and tuple
# it puts in a Command or Heredoc (it builds them with ``PyObject_CallFunction("O...")``
# and never drops its own), so a long-running ``kiln serve`` grew by about 1 kB per
# build. Which fields leak is measured once on a probe, so a package that no longer
# leaks is left alone; shared singletons (None, booleans, small ints, empty ones) are
# never touched.
_PROBE = "FROM probe\nRUN --mount=type=tmpfs,target=/t <<EOT sh\necho\nEOT\n"


def _leaky(obj: Any) -> frozenset[str]:  # a namedtuple
    out = set()
    for name in obj._fields:
        value = getattr(obj, name)
        # holders: the namedtuple, ``value``, getrefcount's argument; a fourth is the leak
        if isinstance(value, str | tuple) and value and sys.getrefcount(value) == 4:
            out.add(name)
    return frozenset(out)


@functools.cache
def _leaked_fields() -> tuple[frozenset[str], frozenset[str]]:
    probe = list(dockerfile.parse_string(_PROBE))[1]
    commands = _leaky(probe)  # before anything else holds one of its fields
    heredocs = getattr(probe, "heredocs", ())
    return commands, (_leaky(heredocs[0]) if heredocs else frozenset())


def _release(obj: tuple, leaked: frozenset[str]) -> None:
    for name in leaked:
        value = getattr(obj, name)
        if isinstance(value, str | tuple) and value:
            ctypes.pythonapi.Py_DecRef(ctypes.py_object(value))


def _first_long_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
            return number
    return None


def _failing_line(text: str) -> int | None:
    """The first line at which a prefix of ``text`` stops parsing (binary search)."""
    lines = text.splitlines(keepends=True)

    def fails(count: int) -> bool:
        try:
            dockerfile.parse_string("".join(lines[:count]))
        except dockerfile.GoParseError as exc:
            return "no instructions" not in str(exc)
        return False

    low, high = 1, len(lines)
    if not fails(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid + 1
    return low


def _node(cmd: dockerfile.Command, lines: list[str], escape: str, name: str) -> Node:
    instruction = cmd.cmd.upper()
    if instruction not in KNOWN_INSTRUCTIONS:
        raise InvalidArgument(f"{name}:{cmd.start_line}: unknown instruction: {instruction}")
    first_line = cmd.original.split("\n", 1)[0]
    heredocs: tuple[Heredoc, ...] = ()
    if cmd.heredocs:
        # start-up: heredocs are read only where a Dockerfile has one
        from kiln.build.heredoc import attach_bodies

        bodies = [(h.name, h.file_descriptor, h.content) for h in cmd.heredocs]
        heredocs = attach_bodies(first_line, bodies, escape)
    inner = None
    if instruction == "ONBUILD":
        inner = _onbuild_inner(cmd, lines, escape, name)
    return Node(
        instruction=instruction,
        args=tuple(cmd.value),
        flags=tuple(cmd.flags),
        json_form=bool(cmd.json),
        original=first_line,
        line=cmd.start_line,
        end_line=cmd.end_line,
        heredocs=heredocs,
        inner=inner,
    )


def _onbuild_inner(
    cmd: dockerfile.Command, lines: list[str], escape: str, name: str
) -> Node | None:
    """Parse the trigger of ONBUILD again from the source, keeping its flags and heredocs."""
    source = lines[cmd.start_line - 1 : cmd.end_line]
    if not source:
        return None
    head = re.sub(r"^\s*onbuild\b\s*", "", source[0], count=1, flags=re.IGNORECASE)
    if not head.strip():
        return None
    body = "\n".join([head, *source[1:]]) + "\n"
    prefix = f"# escape={escape}\n" if escape != "\\" else ""
    try:
        inner = list(dockerfile.parse_string(prefix + body))
    except dockerfile.GoParseError as exc:
        raise InvalidArgument(f"{name}:{cmd.start_line}: {exc}") from None
    if not inner:
        return None
    node = _node(inner[0], [], escape, name)
    shift = cmd.start_line - inner[0].start_line
    return Node(
        instruction=node.instruction,
        args=node.args,
        flags=node.flags,
        json_form=node.json_form,
        original=node.original,
        line=node.line + shift,
        end_line=node.end_line + shift,
        heredocs=node.heredocs,
        inner=node.inner,
    )
