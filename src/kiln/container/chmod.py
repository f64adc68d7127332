"""``--chmod`` of COPY/ADD (and ``kiln copy``/``kiln add``): an octal mode or a symbolic one.

Octal (``755``, ``0644``, ``4755``) sets the mode outright. Symbolic, as chmod(1) and
BuildKit's Dockerfile 1.14 read it (BSD ``setmode`` with a umask of 0): comma-separated
clauses ``[ugoa]*`` then one or more ``[+-=]`` each followed by ``[rwxXst]*`` or one of
``u``/``g``/``o`` (copy that class's current bits), applied in order to each copied entry's
own mode. No ``who`` means all (``+x`` is ``a+x``); ``X`` adds execute to directories and
to files that have some execute bit already (in the source's mode); ``s`` sets set-user-ID
with ``u`` and set-group-ID with ``g`` (both without a who); ``t`` is the sticky bit
(ignored with only ``o``); ``=`` clears the classes named (and their set-ID bits, never
the sticky bit) first.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["Chmod", "parse_chmod"]

_CLASS_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o0007}  # each class with its set-ID bit
_SHIFT = {"u": 6, "g": 3, "o": 0}
_STICKY = 0o1000


@dataclass(frozen=True)
class _Action:
    """One clause of a symbolic --chmod mode."""

    who: str  # "" = all
    op: str  # + - =
    perms: str  # letters of rwxXst, or one of u g o (copy)


@dataclass(frozen=True)
class Chmod:
    """A parsed ``--chmod``: ``apply(mode, is_dir)`` gives an entry's new permission bits."""

    spec: str
    octal: int | None = None
    actions: tuple[_Action, ...] = ()

    def apply(self, mode: int, is_dir: bool = False) -> int:
        if self.octal is not None:
            return self.octal
        original = mode & 0o7777
        new = original
        for action in self.actions:
            new = _apply(action, new, original, is_dir)
        return new


def _apply(action: _Action, new: int, original: int, is_dir: bool) -> int:
    who = action.who
    classes = "ugo" if not who or "a" in who else "".join(c for c in "ugo" if c in who)
    copy = action.perms in ("u", "g", "o")
    if copy:
        rwx = (new >> _SHIFT[action.perms]) & 0o7
        bits = 0
        for c in classes:
            bits |= rwx << _SHIFT[c]
    else:
        bits = 0
        triple = 0
        for p in action.perms:
            if p == "r":
                triple |= 0o4
            elif p == "w":
                triple |= 0o2
            elif p == "x" or p == "X" and (is_dir or original & 0o111 or action.op == "-"):
                triple |= 0o1
        for c in classes:
            bits |= triple << _SHIFT[c]
        if "s" in action.perms:
            if not who or "u" in who or "a" in who:
                bits |= 0o4000
            if not who or "g" in who or "a" in who:
                bits |= 0o2000
        if "t" in action.perms and (not who or set(who) - {"o"}):
            bits |= _STICKY
    if action.op == "+":
        return new | bits
    if action.op == "-":
        return new & ~bits
    cleared = 0
    for c in classes:  # a copy replaces the rwx bits only; "=" also clears the set-ID bit
        cleared |= 0o7 << _SHIFT[c] if copy else _CLASS_BITS[c]
    return (new & ~cleared) | bits


def parse_chmod(spec: str) -> Chmod:
    """``--chmod`` text -> :class:`Chmod`; anything else raises InvalidArgument."""
    text = spec.strip()
    if text[:1].isdigit():
        if len(text) > 5 or any(c not in "01234567" for c in text) or int(text, 8) > 0o7777:
            raise InvalidArgument(
                f"invalid chmod parameter: {spec}. it should be octal string and between "
                "0 and 07777, or symbolic (u=rwx,g=rx,o=, +x, go-w)"
            )
        return Chmod(spec, octal=int(text, 8))
    actions: list[_Action] = []
    for clause in text.split(","):
        i = 0
        while i < len(clause) and clause[i] in "ugoa":
            i += 1
        who = clause[:i]
        if i == len(clause):
            raise _bad(spec)
        while i < len(clause):
            op = clause[i]
            if op not in "+-=":
                raise _bad(spec)
            i += 1
            j = i
            if j < len(clause) and clause[j] in "ugo":
                j += 1
            else:
                while j < len(clause) and clause[j] in "rwxXst":
                    j += 1
            actions.append(_Action(who, op, clause[i:j]))
            i = j
    return Chmod(spec, actions=tuple(actions))


def _bad(spec: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid chmod parameter: {spec}: use an octal mode (0755) or a symbolic one "
        "([ugoa][+-=][rwxXst] clauses separated by commas, e.g. u=rwx,g=rx,o=)"
    )
