"""Go text/template, the part of it podman's and docker's ``--format`` users write.

Actions: ``{{.A.B}}``, ``{{.}}``, ``{{$}}``, ``{{$v.A}}``, pipelines (``{{.Os | upper}}``),
``{{if}}``/``{{else if}}``/``{{else}}``, ``{{range}}`` (with ``$i, $v :=`` and ``{{else}}``),
``{{with}}``, ``{{- trim -}}`` markers, string/number/bool literals and parentheses. Functions:
Go's builtins (``index len eq ne lt le gt ge and or not print printf println slice``) and
podman's (``json join lower upper title split truncate pad``).

Objects are JSON-shaped (dicts, lists, str, int, float, bool, None). A dict whose keys all start
with an upper-case letter stands for a Go struct: a missing field is an error, as in Go; any
other dict is a map, where a missing key prints ``<no value>``. A :class:`GoStruct` is a struct
whose JSON leaves out empty fields (``omitempty``): a field it declares but lacks (or holds as
null) reads as its zero value (:data:`NIL_SLICE`, :data:`NIL_MAP`, :data:`NIL_POINTER`, ``""``,
``false``) while ``{{json .}}`` shows what it holds. Field names match
case-insensitively when no exact match exists (podman's JSON keys differ in case from its
fields: ``.Id`` and ``.ID``). Errors are :class:`~kiln.errors.InvalidArgument` naming the
template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern

_NO_VALUE = "<no value>"
MAX_DEPTH = 100  # nested blocks and parentheses: far beyond any real --format
MAX_WIDTH = 10_000  # a pad or printf width: one row never grows to gigabytes
MAX_STEPS = 1_000_000  # range iterations for one object: nested ranges cannot run for ages
_ACTION = lazy_pattern(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = lazy_pattern(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z0-9_]+)+|\.|\$[A-Za-z0-9_]*)"
    r"|(?P<punct>:=|[|(),=])|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)


class TemplateError(InvalidArgument):
    """A template that cannot be parsed or run."""


# --- values as Go prints them -------------------------------------------------


class GoTime(str):
    """A time that is RFC 3339 in JSON (``{{json .Created}}``) and Go's time.Time form
    (``2024-01-02 03:04:05.5 +0000 UTC``, ``go``) when printed, as a Go struct's time is."""

    go: str

    def __new__(cls, rfc3339: str, go: str) -> GoTime:
        obj = super().__new__(cls, rfc3339)
        obj.go = go
        return obj


class GoNil:
    """A Go nil slice, map or pointer: printed as ``shown`` (``[]``, ``map[]``, ``<nil>``),
    ``null`` in JSON, empty and false."""

    def __init__(self, shown: str):
        self.shown = shown

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"GoNil({self.shown!r})"


NIL_SLICE = GoNil("[]")
NIL_MAP = GoNil("map[]")
NIL_POINTER = GoNil("<nil>")


class GoStruct(dict):
    """A JSON object standing for a Go struct with ``omitempty`` fields: ``zero`` maps each
    declared field to the value it reads as when absent or null."""

    def __init__(self, data: dict, zero: dict[str, Any]):
        super().__init__(data)
        self.zero = zero


def go_str(value: Any) -> str:
    """``[a b]``, ``map[k:v]``, ``true``, ``<no value>`` (fmt's %v)."""
    if value is None:
        return _NO_VALUE
    if isinstance(value, GoNil):
        return value.shown
    if isinstance(value, GoTime):
        return value.go
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_inner(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_inner(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _inner(value: Any) -> str:
    return "<nil>" if value is None else go_str(value)


def go_json(value: Any) -> str:
    """encoding/json.Marshal: compact, ``<>&`` escaped as Go escapes them."""
    out = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_nil)
    return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_nil(value: Any) -> None:
    if isinstance(value, GoNil):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def truthy(value: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, lists and maps are false."""
    return bool(value)


# --- functions ------------------------------------------------------------------


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is NIL_MAP:  # indexing a nil map gives the zero value
            return ""
        if item is NIL_SLICE:
            item = []
        if item is NIL_POINTER:
            raise TemplateError("error calling index: index of nil pointer")
        if isinstance(item, dict):
            item = item.get(key, "")
        elif isinstance(item, list | tuple | str):
            try:
                item = item[int(key)]
            except (IndexError, ValueError, TypeError):
                raise TemplateError(f"error calling index: index out of range: {key}") from None
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(item)}")
    return item


def _len(item: Any) -> int:
    if item is NIL_POINTER:
        raise TemplateError("error calling len: len of nil pointer")
    return len(item)


def _slice(item: Any, *bounds: Any) -> Any:
    if isinstance(item, dict) or item is NIL_MAP or item is None or item is NIL_POINTER:
        raise TemplateError(f"error calling slice: can't slice item of type {_go_kind(item)}")
    if len(bounds) > 2:
        raise TemplateError("error calling slice: too many slice indexes")
    size = len(item)
    low = int(bounds[0]) if bounds else 0
    high = int(bounds[1]) if len(bounds) > 1 else size
    for at in (low, high):
        if not 0 <= at <= size:
            raise TemplateError(f"error calling slice: index out of range: {at}")
    if low > high:
        raise TemplateError(f"error calling slice: invalid slice index: {low} > {high}")
    return item if item is NIL_SLICE else item[low:high]


def _go_kind(item: Any) -> str:
    if isinstance(item, dict) or item is NIL_MAP:
        return "map"
    if item is None:
        return "nil"
    return "nil pointer" if item is NIL_POINTER else type(item).__name__


def _printf(fmt: str, *args: Any) -> str:
    conv = iter(args)

    def sub(m: re.Match) -> str:
        if m.group(0) == "%%":
            return "%"
        arg = next(conv, None)
        verb = m.group(0)[-1]
        if any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", m.group(0)[1:-1])):
            raise TemplateError(f"error calling printf: a width over {MAX_WIDTH}")
        if verb == "q":
            return json.dumps(go_str(arg))
        if verb in "dxf" and isinstance(arg, int | float):
            return (m.group(0)[:-1] + verb) % arg
        return (m.group(0)[:-1] + "s") % go_str(arg)

    return re.sub(r"%%|%[-+ 0#]*\d*(?:\.\d+)?[vsdqfxt]", sub, fmt)


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def call(a: Any, *others: Any) -> bool:
        try:
            return any(op(a, b) for b in others) if op is _eq else op(a, others[0])
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None

    return call


def _eq(a: Any, b: Any) -> bool:
    return a == b


def _and(*args: Any) -> Any:
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truthy(a):
            return a
    return args[-1]


def _pad(s: Any, left: int, right: int) -> str:
    if max(int(left), int(right)) > MAX_WIDTH:
        raise TemplateError(f"error calling pad: a width over {MAX_WIDTH}")
    return " " * int(left) + go_str(s) + " " * int(right)


FUNCS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "not": lambda a: not truthy(a),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "eq": _compare(_eq),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _printf,
    "json": go_json,
    "join": lambda items, sep: sep.join(go_str(i) for i in (items or [])),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: re.sub(r"\b[a-z]", lambda m: m.group(0).upper(), go_str(s)),
    "split": lambda s, sep: go_str(s).split(sep),
    "truncate": lambda s, n: go_str(s)[: int(n)],
    "pad": _pad,
}


# --- parse ------------------------------------------------------------------------


@dataclass
class _Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    pipe: list = field(default_factory=list)  # commands; a command is a list of args
    decl: list[str] = field(default_factory=list)  # $i, $v :=
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.items = self._split(source)
        self.pos = 0
        self.depth = 0

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"blocks or parentheses nested deeper than {MAX_DEPTH}")

    def fail(self, why: str) -> TemplateError:
        return TemplateError(f'template: {why} in "{self.source}"')

    @staticmethod
    def _split(source: str) -> list[tuple[str, str]]:
        """``("text", s)`` and ``("action", inner)`` in order, trim markers applied."""
        items: list[tuple[str, str]] = []
        pos = 0
        for m in _ACTION().finditer(source):
            text = source[pos : m.start()]
            if m.group(1):
                text = text.rstrip()
            items.append(("text", text))
            items.append(("action", m.group(2).strip()))
            items.append(("trim", "") if m.group(3) else ("keep", ""))
            pos = m.end()
        items.append(("text", source[pos:]))
        out: list[tuple[str, str]] = []
        trim = False
        for kind, value in items:
            if kind in ("trim", "keep"):
                trim = kind == "trim"
                continue
            if kind == "text" and trim:
                value = value.lstrip()
            if kind == "text" and "{{" in value:
                raise TemplateError(f'template: unclosed action in "{source}"')
            if value or kind == "action":
                out.append((kind, value))
        return out

    def parse(self) -> list[_Node]:
        nodes, end = self._list()
        if end is not None:
            raise self.fail(f"unexpected {{{{{end}}}}}")
        return nodes

    def _list(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an ``end``/``else`` (returned as the second item) or the end."""
        nodes: list[_Node] = []
        while self.pos < len(self.items):
            kind, value = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_Node("text", text=value))
                continue
            if value.startswith("/*"):
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in ("end", "else"):
                return nodes, value
            if word in ("if", "range", "with"):
                nodes.append(self._block(word, value[len(word) :]))
            else:
                decl, pipe = self._pipeline(value)
                nodes.append(_Node("action", pipe=pipe, decl=decl))
        return nodes, None

    def _block(self, word: str, rest: str) -> _Node:
        self.deeper()
        try:
            return self._block_body(word, rest)
        finally:
            self.depth -= 1

    def _block_body(self, word: str, rest: str) -> _Node:
        decl, pipe = self._pipeline(rest)
        node = _Node(word, pipe=pipe, decl=decl)
        node.body, end = self._list()
        if end is None:
            raise self.fail("unexpected EOF")
        if end.startswith("else"):
            tail = end[len("else") :].strip()
            if tail.startswith(("if ", "with ")):  # else if ... : a nested block sharing one end
                inner = tail.split(None, 1)[0]
                node.orelse = [self._block(inner, tail[len(inner) :])]
                return node
            node.orelse, end = self._list()
            if end != "end":
                raise self.fail("expected {{end}}")
        elif end != "end":
            raise self.fail(f"unexpected {{{{{end}}}}}")
        return node

    def _pipeline(self, text: str) -> tuple[list[str], list]:
        tokens = self._tokens(text)
        decl: list[str] = []
        if ":=" in [t[1] for t in tokens]:
            at = [t[1] for t in tokens].index(":=")
            decl = [v for k, v in tokens[:at] if k == "field"]
            tokens = tokens[at + 1 :]
        pipe, rest = self._commands(tokens)
        if rest:
            raise self.fail(f"unexpected {rest[0][1]!r}")
        if not pipe:
            raise self.fail("missing value for command")
        return decl, pipe

    def _commands(self, tokens: list) -> tuple[list, list]:
        pipe: list = []
        cmd: list = []
        while tokens:
            kind, value = tokens[0]
            if value == ")":
                break
            tokens = tokens[1:]
            if value == "|":
                if not cmd:
                    raise self.fail("missing command before |")
                pipe.append(cmd)
                cmd = []
            elif value == "(":
                self.deeper()
                inner, tokens = self._commands(tokens)
                self.depth -= 1
                if not tokens:
                    raise self.fail("unclosed left paren")
                tokens = tokens[1:]
                cmd.append(("pipe", inner))
            elif kind == "ident" and value not in FUNCS and value not in ("true", "false", "nil"):
                raise TemplateError(f'template: function "{value}" not defined')
            elif value == ",":
                continue
            else:
                cmd.append((kind, value))
        if cmd:
            pipe.append(cmd)
        return pipe, tokens

    def _tokens(self, text: str) -> list[tuple[str, str]]:
        tokens = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN().match(text, pos)
            if not m or m.end() == pos:
                raise TemplateError(f'template: bad character {text[pos]!r} in "{self.source}"')
            pos = m.end()
            kind = m.lastgroup or ""
            tokens.append((kind, m.group(kind)))
        return tokens


# --- run --------------------------------------------------------------------------


def _is_struct(obj: dict) -> bool:
    return bool(obj) and all(k[:1].isupper() for k in obj)


class _Runner:
    def __init__(self, source: str, root: Any):
        self.source = source
        self.vars: list[dict[str, Any]] = [{"$": root}]
        self.steps = 0

    def run(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                value = self.pipe(node.pipe, dot)
                if node.decl:
                    self.vars[-1][node.decl[0]] = value
                else:
                    out.append(go_str(value))
            elif node.kind in ("if", "with"):
                value = self.pipe(node.pipe, dot)
                if truthy(value):
                    self.scoped(node.body, value if node.kind == "with" else dot, out, {})
                else:
                    self.scoped(node.orelse, dot, out, {})
            else:
                self.range(node, dot, out)

    def scoped(self, nodes: list[_Node], dot: Any, out: list[str], names: dict) -> None:
        self.vars.append(names)
        try:
            self.run(nodes, dot, out)
        finally:
            self.vars.pop()

    def range(self, node: _Node, dot: Any, out: list[str]) -> None:
        value = self.pipe(node.pipe, dot)
        if isinstance(value, dict):
            pairs = sorted(value.items())
        elif isinstance(value, list | tuple):
            pairs = list(enumerate(value))
        elif value is None or value is NIL_SLICE or value is NIL_MAP:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {go_str(value)}")
        if not pairs:
            self.scoped(node.orelse, dot, out, {})
        self.steps += len(pairs)
        if self.steps > MAX_STEPS:
            raise TemplateError(f'template: more than {MAX_STEPS} range steps in "{self.source}"')
        for key, item in pairs:
            names = dict(zip(node.decl[::-1], (item, key), strict=False)) if node.decl else {}
            self.scoped(node.body, item, out, names)

    def pipe(self, pipe: list, dot: Any) -> Any:
        value: Any = _NOTHING
        for cmd in pipe:
            value = self.command(cmd, dot, value)
        return value

    def command(self, cmd: list, dot: Any, piped: Any) -> Any:
        kind, first = cmd[0]
        if kind == "ident" and first in FUNCS:
            args = [self.arg(a, dot) for a in cmd[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                return FUNCS[first](*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, AttributeError, KeyError) as e:
                raise TemplateError(
                    f'template: error calling {first}: {e} in "{self.source}"'
                ) from None
        if len(cmd) > 1 or piped is not _NOTHING:
            raise TemplateError(
                f'template: can\'t give argument to non-function in "{self.source}"'
            )
        return self.arg(cmd[0], dot)

    def arg(self, token: tuple, dot: Any) -> Any:
        kind, value = token
        if kind == "pipe":
            return self.pipe(value, dot)
        if kind == "str":
            return json.loads(value) if value.startswith('"') else value[1:-1]
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "ident":
            if value in FUNCS:
                return FUNCS[value]()
            return {"true": True, "false": False, "nil": None}[value]
        return self.field(value, dot)

    def field(self, path: str, dot: Any) -> Any:
        if path.startswith("$"):
            name, _, rest = path.partition(".")
            for scope in reversed(self.vars):
                if name in scope:
                    obj = scope[name]
                    break
            else:
                raise TemplateError(f'template: undefined variable "{name}"')
        else:
            obj, rest = dot, path[1:]
        for part in rest.split(".") if rest else []:
            obj = self.lookup(obj, part)
        return obj

    def lookup(self, obj: Any, part: str) -> Any:
        if obj is None or obj is NIL_MAP:  # a nil map (a JSON null): Go prints <no value>
            return None
        if obj is NIL_POINTER:
            raise TemplateError(f'template: nil pointer evaluating {part} in "{self.source}"')
        if isinstance(obj, dict):
            match = [part] if part in obj else [k for k in obj if k.lower() == part.lower()]
            value = obj[match[0]] if match else None
            if isinstance(obj, GoStruct) and value is None and part in obj.zero:
                return obj.zero[part]
            if match or not _is_struct(obj):
                return value
        raise TemplateError(f'template: can\'t evaluate field {part} in "{self.source}"')


_NOTHING = object()


def compile_template(source: str) -> Callable[[Any], str]:
    """The template parsed once; the result renders one object."""
    nodes = _Parser(source).parse()

    def render(obj: Any) -> str:
        out: list[str] = []
        _Runner(source, obj).run(nodes, obj, out)
        return "".join(out)

    return render


def render(source: str, obj: Any) -> str:
    return compile_template(source)(obj)
