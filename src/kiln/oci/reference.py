"""Image references per the Docker reference grammar, normalised as Docker does.

``busybox`` -> ``docker.io/library/busybox:latest``;
``localhost:5000/a/b:tag@sha256:...`` keeps its registry, tag and digest.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from kiln.errors import InvalidArgument
from kiln.oci.digest import Digest
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII: no "é" in a tag
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = lazy_pattern(rf"^{_DOMAIN}$")  # the costliest to compile: see _KNOWN_DOMAINS
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = lazy_pattern(rf"^{_DIGEST}$")
_ID_RE = lazy_pattern(r"^[a-f0-9]{64}$")
_SPACE_RE = re.compile(r"\s")
#: domains nearly every reference a build names has (local images: localhost/), valid as they are
_KNOWN_DOMAINS = frozenset({DEFAULT_DOMAIN, "localhost"})


@dataclass(frozen=True)
class Reference:
    """A fully normalised reference: domain, path, and tag and/or digest."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, value: str, *, default_tag: bool = True) -> Reference:
        """Parse and normalise; ``default_tag`` adds ``:latest`` when neither tag nor digest."""
        if not value:
            raise InvalidArgument(
                "invalid reference format: repository name must have at least one component"
            )
        if _SPACE_RE.search(value):  # str.isspace's characters, found in C
            raise InvalidArgument(f'invalid reference format: "{value}" contains whitespace')
        rest, digest = value, ""
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST_RE().match(digest):
                raise InvalidArgument(f'invalid reference format: bad digest in "{value}"')
            Digest.parse(digest)
        tag = ""
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise InvalidArgument(f'invalid reference format: bad tag "{tag}" in "{value}"')
        domain, path = _split_domain(rest)
        if not domain or (domain not in _KNOWN_DOMAINS and not _DOMAIN_RE().match(domain)):
            raise InvalidArgument(f'invalid reference format: bad registry "{domain}" in "{value}"')
        if path != path.lower() and _PATH_RE.match(path.lower()):
            raise InvalidArgument(
                f"invalid reference format: repository name ({path}) must be lowercase"
            )
        if not _PATH_RE.match(path):
            raise InvalidArgument(
                f'invalid reference format: bad repository name "{path}" in "{value}"'
            )
        if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
            raise InvalidArgument(
                f"invalid reference format: repository name must not be more than {MAX_NAME_LENGTH} characters"
            )
        if default_tag and not tag and not digest:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """``busybox`` for ``docker.io/library/busybox``, as docker shows it."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_PREFIX) and path.count("/") == 1:
                path = path[len(OFFICIAL_PREFIX) :]
            return path
        return self.name

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, "", digest)

    @property
    def tagged(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag else self.name

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and not first.startswith("[")
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, remainder
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def is_short_name(value: str) -> bool:
    """True when ``value`` names no registry (``busybox``, ``library/busybox``)."""
    first, sep, _ = value.partition("/")
    return not sep or not (
        "." in first or ":" in first or first == "localhost" or first.startswith("[")
    )


def is_loopback_domain(domain: str) -> bool:
    """True when ``domain`` (``host[:port]``) is on this machine: localhost, 127.0.0.0/8 or
    ``[::1]``, which dockerd treats as an insecure registry (plain HTTP allowed)."""
    import ipaddress  # start-up: only a Docker API pull or build asks

    if domain.startswith("["):  # [v6 address]:port
        host = domain[1:].partition("]")[0]
    else:
        host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    if host == "localhost":
        return True
    try:  # an address, not a name that starts as one (127.example.com)
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_registry_key(value: str) -> bool:
    """True when ``value`` is ``host[:port][/path]`` in the reference grammar: what an auth
    file's key, a login's registry, may be (no tag, no digest, no ``..``, no NUL)."""
    domain, _, path = value.partition("/")
    return bool(_DOMAIN_RE().match(domain)) and (not path or bool(_PATH_RE.match(path)))


def looks_like_id(value: str) -> bool:
    v = value.removeprefix("sha256:")
    return bool(_ID_RE().match(v))


def parse_normalized(value: str) -> Reference:
    return Reference.parse(value)


def local_name(value: str) -> str:
    """The name a locally made image gets: short names go under ``localhost/``,
    as podman and buildah name what they tag, commit, build and import."""
    if is_short_name(value):
        return f"localhost/{value}"
    return value


def match_name(name: str, names: Collection[str]) -> str | None:
    """The one of ``names`` (stored, normalised names) that ``name`` spells: as given,
    normalised (``busybox`` -> ``docker.io/library/busybox:latest``) or as a local name
    (``app`` -> ``localhost/app:latest``); None when it spells none."""
    candidates = [name]
    try:
        candidates.append(str(Reference.parse(name)))
        candidates.append(str(Reference.parse(local_name(name))))
    except InvalidArgument:
        pass
    for c in candidates:
        if c in names:
            return c
    return None
