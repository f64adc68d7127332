"""Parse ``WWW-Authenticate`` headers (RFC 7235) as registries send them.

``Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
scope="repository:library/busybox:pull"`` becomes
``Challenge("bearer", {"realm": ..., "service": ..., "scope": ...})``.
Quoted values may hold commas and escaped quotes; several challenges may
share one header (``Basic realm="x", Bearer realm="y"``).
"""

from __future__ import annotations

import re
from dataclasses import field

from kiln.util.lazy_dataclass import dataclass

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*")
_TOKEN_VALUE_RE = re.compile(rf"({_TOKEN})")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer", ...
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")


def _quoted(header: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``header[pos] == '"'``; return (value, end)."""
    out: list[str] = []
    i = pos + 1
    while i < len(header):
        c = header[i]
        if c == "\\" and i + 1 < len(header):
            out.append(header[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i  # unterminated: take the rest, as lenient clients do


def _skip_commas(header: str, pos: int) -> int:
    while pos < len(header) and header[pos] in ", \t":
        pos += 1
    return pos


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in one header value; unparseable junk is skipped, never raised."""
    out: list[Challenge] = []
    pos = _skip_commas(header, 0)
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if not m:
            nxt = header.find(",", pos)
            if nxt < 0:
                break
            pos = _skip_commas(header, nxt)
            continue
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while True:
            save = _skip_commas(header, pos)
            pm = _PARAM_RE.match(header, save)
            if not pm:
                pos = save
                break
            # "Basic realm=x, Bearer realm=y": a token followed by a space and another
            # token=... starts a new challenge, which _PARAM_RE cannot match (no "=").
            key = pm.group(1).lower()
            vpos = pm.end()
            if vpos < len(header) and header[vpos] == '"':
                value, pos = _quoted(header, vpos)
            else:
                vm = _TOKEN_VALUE_RE.match(header, vpos)
                value = vm.group(1) if vm else ""
                pos = vm.end() if vm else vpos
            params.setdefault(key, value)
        out.append(Challenge(scheme, params))
    return out


def parse_headers(values: list[str]) -> list[Challenge]:
    """Challenges from every ``WWW-Authenticate`` header of a response."""
    out: list[Challenge] = []
    for value in values:
        out.extend(parse_challenges(value))
    return out


def preferred(challenges: list[Challenge]) -> Challenge | None:
    """Bearer over Basic, as Docker clients choose; None when neither is offered."""
    for scheme in ("bearer", "basic"):
        for ch in challenges:
            if ch.scheme == scheme:
                return ch
    return None
