"""Docker's shell-word expansion for Dockerfile instructions.

A small scanner that does what BuildKit's ``shell`` package does for the
instructions that opt into expansion: single and double quotes, the escape
character (``\\`` or the ``# escape=`` one), ``$V``/``${V}`` and the parameter
forms ``${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?m} ${V?m} ${V#p} ${V##p} ${V%p}
${V%%p} ${V/p/r} ${V//p/r}``; a ``$`` that starts no name (``$$``, ``$@``) stays, as
buildah keeps it.  Unset and empty variables are distinguished as
in a POSIX shell.  It also records which variable names a word referenced,
which the cache needs ("the build args it uses").

Pure: standard library and ``kiln.errors`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from kiln.build.shell_glob import ShellGlob, replace, trim_prefix, trim_suffix
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["Expansion", "ShellLex"]

_EOF = ""


# No real Dockerfile nests ${a:-${b:-...}} more than a few levels; a hostile one
# thousands deep must get an error, not a RecursionError.
MAX_NESTING = 64
# What one word may expand to. A value that doubles at each ARG (``ARG b=$a$a``) is a
# terabyte forty lines later; Linux passes at most 128 KiB per environment string to a
# RUN anyway, and real values (versions, paths, a certificate) are far below this.
MAX_EXPANSION = 1024 * 1024


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word."""

    value: str
    words: tuple[str, ...]
    matched: frozenset[str]  # names referenced that were set
    missing: frozenset[str]  # names referenced that were unset


class _Words:
    """Splits the expanded text into words the way Docker does.

    A word is kept as a list of pieces: ``self.word += text`` on an attribute copies
    the word each time (CPython extends a string in place only in a local), which
    made a 1 MB variable's expansion take minutes.
    """

    def __init__(self) -> None:
        self.words: list[str] = []
        self.pieces: list[str] = []

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            self._end_word()
        else:
            self.pieces.append(ch)

    def add_raw(self, text: str) -> None:
        if text:
            self.pieces.append(text)

    def add_string(self, text: str) -> None:
        """Add expanded text: its unquoted whitespace separates words."""
        parts = text.split()  # str.split() splits where str.isspace() is true
        if not parts:
            if text:
                self._end_word()
            return
        if text[0].isspace():
            self._end_word()
        self.pieces.append(parts[0])
        for part in parts[1:]:
            self._end_word()
            self.pieces.append(part)
        if text[-1].isspace():
            self._end_word()

    def _end_word(self) -> None:
        if self.pieces:
            self.words.append("".join(self.pieces))
            self.pieces = []

    def result(self) -> list[str]:
        self._end_word()
        return self.words


@dataclass
class _State:
    """The scanner's position while expanding one word."""

    text: str
    env: Mapping[str, str]
    pos: int = 0
    depth: int = 0  # ${...} nesting of the word being scanned
    matched: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch != _EOF:
            self.pos += 1
        return ch

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.missing.add(name)
        return "", False


class ShellLex:
    """Expands Dockerfile words; ``escape`` is the Dockerfile's escape character."""

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
    ) -> None:
        if len(escape) != 1:
            raise InvalidArgument(f"invalid escape character {escape!r}: must be one character")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self._special = {"'": self._single_quote, '"': self._double_quote, "$": self._dollar}

    # -- public API ---------------------------------------------------------

    def expand(self, word: str, env: Mapping[str, str]) -> Expansion:
        st = _State(word, env)
        value, words, found = self._until(st, frozenset(), self.raw_escapes)
        del found
        return Expansion(value, tuple(words), frozenset(st.matched), frozenset(st.missing))

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` into one string (quotes removed, no splitting)."""
        return self.expand(word, env).value

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it on unquoted whitespace, as Docker's ProcessWords."""
        return list(self.expand(word, env).words)

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> tuple[str, set[str]]:
        """Expand ``word``; also return the names it referenced that were set in ``env``."""
        exp = self.expand(word, env)
        return exp.value, set(exp.matched)

    # -- scanner ------------------------------------------------------------

    def _until(
        self, st: _State, stops: frozenset[str], raw_escapes: bool
    ) -> tuple[str, list[str], bool]:
        """Scan until an unquoted stop character (consumed) or the end."""
        if st.depth > MAX_NESTING:
            raise InvalidArgument(
                f"variable expansion nested more than {MAX_NESTING} levels deep: refused"
            )
        st.depth += 1
        try:
            return self._scan(st, stops, raw_escapes)
        finally:
            st.depth -= 1

    def _scan(
        self, st: _State, stops: frozenset[str], raw_escapes: bool
    ) -> tuple[str, list[str], bool]:
        out: list[str] = []
        words = _Words()
        size = 0
        while st.peek() != _EOF:
            ch = st.peek()
            if ch in stops:
                st.next()
                return "".join(out), words.result(), True
            handler = self._special.get(ch)
            if handler is not None:
                piece = handler(st)
                size = _grown(size, piece)
                out.append(piece)
                if ch == "$":
                    words.add_string(piece)
                else:
                    words.add_raw(piece)
                continue
            ch = st.next()
            if ch == self.escape:
                if raw_escapes:
                    out.append(ch)
                    words.add_raw(ch)
                ch = st.next()
                if ch == _EOF:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        return "".join(out), words.result(), not stops

    def _single_quote(self, st: _State) -> str:
        # All chars between single quotes are taken as-is; no escapes.
        st.next()
        out = ["'"] if self.raw_quotes else []
        while True:
            ch = st.next()
            if ch == _EOF:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self, st: _State) -> str:
        # Only $, " and the escape character itself can be escaped inside "".
        st.next()
        out = ['"'] if self.raw_quotes else []
        size = 0
        while True:
            ch = st.peek()
            if ch == _EOF:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                st.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                piece = self._dollar(st)
                size = _grown(size, piece)
                out.append(piece)
                continue
            ch = st.next()
            if ch == self.escape:
                nxt = st.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", self.escape):
                    if self.raw_escapes:
                        out.append(ch)
                    ch = st.next()
            out.append(ch)

    def _name(self, st: _State) -> str:
        ch = st.peek()
        if ch.isdigit():
            start = st.pos
            while st.peek().isdigit():
                st.next()
            return st.text[start : st.pos]
        # ``$$ $@ $* $# $? $- $!`` are no names: the ``$`` stays as written, as buildah keeps
        # it (BuildKit reads them as the shell's special parameters, always empty in a build)
        start = st.pos
        while st.peek() != _EOF and (st.peek().isalnum() or st.peek() == "_"):
            st.next()
        return st.text[start : st.pos]

    def _dollar(self, st: _State) -> str:
        st.next()  # the $
        if st.peek() != "{":
            name = self._name(st)
            if not name:
                return "$"
            value, found = st.lookup(name)
            if not found and self.skip_unset:
                return "$" + name
            return value
        st.next()  # the {
        if st.peek() == _EOF:
            raise InvalidArgument("syntax error: missing '}'")
        if st.peek() in "{}:":
            raise InvalidArgument("syntax error: bad substitution")
        name = self._name(st)
        ch = st.next()
        if ch == "}":
            value, found = st.lookup(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        if ch == _EOF:
            raise InvalidArgument("syntax error: missing '}'")
        if ch == "/":
            return self._replace(st, name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = st.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%"):
            raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
        pattern_mode = ch in ("#", "%")
        if null_is_unset and pattern_mode:
            raise InvalidArgument(f"unsupported modifier ({modifier}) in substitution")
        word, _, found = self._until(st, frozenset("}"), pattern_mode)
        if not found:
            raise InvalidArgument("syntax error: missing '}'")
        value, is_set = st.lookup(name)
        if not is_set and self.skip_unset:
            return "${" + name + modifier + word + "}"
        empty = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not is_set:
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        glob = ShellGlob(word, self.escape)
        if ch == "#":
            return trim_prefix(value, glob, greedy)
        return trim_suffix(value, glob, greedy)

    def _replace(self, st: _State, name: str) -> str:
        replace_all = st.peek() == "/"
        if replace_all:
            st.next()
        pattern, _, found = self._until(st, frozenset("/}"), True)
        replacement = ""
        if found and st.text[st.pos - 1] == "/":
            replacement, _, found = self._until(st, frozenset("}"), False)
        if not found:
            raise InvalidArgument("syntax error: missing '}'")
        value, is_set = st.lookup(name)
        if not is_set and self.skip_unset:
            sep = "//" if replace_all else "/"
            return "${" + name + sep + pattern + "/" + replacement + "}"
        return replace(
            value, ShellGlob(pattern, self.escape), replacement, replace_all, MAX_EXPANSION
        )


def _grown(size: int, piece: str) -> int:
    """``size`` plus the expanded ``piece``; an error past ``MAX_EXPANSION``."""
    size += len(piece)
    if size > MAX_EXPANSION:
        raise InvalidArgument(f"variable expansion longer than {MAX_EXPANSION} characters: refused")
    return size
