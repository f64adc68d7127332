"""containers-registries.conf(5), version 2: search registries, short names, mirrors.

Files: ``--registries-conf`` or ``$KILN_REGISTRIES_CONF``, else
``/etc/containers/registries.conf``; then every ``*.conf`` in the
``registries.conf.d`` directory beside it, in name order. A drop-in replaces
the top-level keys it sets and the ``[[registry]]`` entries with the same prefix,
and adds aliases. Without any file, unqualified names search ``docker.io``
(Docker's behaviour).
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Mapping
from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.oci.reference import Reference, is_short_name
from kiln.util.lazy_dataclass import dataclass

SYSTEM_PATH = "/etc/containers/registries.conf"
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False


@dataclass(frozen=True)
class PullSource:
    """One place to try for a pull: a rewritten reference and whether it is insecure."""

    ref: Reference
    insecure: bool
    mirror: bool = False


@dataclass
class RegistriesConf:
    search: list[str] = field(default_factory=list)
    short_name_mode: str = "enforcing"
    registries: list[RegistryEntry] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    # -- lookups -------------------------------------------------------------
    def find(self, name: str) -> RegistryEntry | None:
        """The entry whose prefix matches ``name`` (``host/path``) most specifically."""
        best: RegistryEntry | None = None
        best_len = -1
        for entry in self.registries:
            n = _prefix_match(entry.prefix, name)
            if n > best_len:
                best, best_len = entry, n
        return best

    def is_insecure(self, host: str) -> bool:
        """True when registries.conf marks ``host`` (as a location, mirror or wildcard) insecure."""
        entry = self.find(host)
        if entry is not None and entry.prefix.startswith("*."):
            return entry.insecure
        for e in self.registries:
            if e.location.split("/", 1)[0] == host and e.insecure:
                return True
            if any(m.location.split("/", 1)[0] == host and m.insecure for m in e.mirrors):
                return True
        return False

    def check_not_blocked(self, ref: Reference) -> None:
        entry = self.find(ref.name)
        if entry is not None and entry.blocked:
            where = " or ".join(self.files) or "registries.conf"
            raise InvalidArgument(f"registry {ref.domain} is blocked in {where}")

    def pull_sources(self, ref: Reference) -> list[PullSource]:
        """Mirrors first, then the (possibly rewritten) primary location."""
        self.check_not_blocked(ref)
        entry = self.find(ref.name)
        if entry is None:
            return [PullSource(ref, False)]
        out: list[PullSource] = []
        if not entry.mirror_by_digest_only or ref.digest:
            for m in entry.mirrors:
                out.append(PullSource(_rewrite(ref, entry.prefix, m.location), m.insecure, True))
        out.append(PullSource(_rewrite(ref, entry.prefix, entry.location), entry.insecure))
        return out

    def push_target(self, ref: Reference) -> PullSource:
        self.check_not_blocked(ref)
        entry = self.find(ref.name)
        if entry is None:
            return PullSource(ref, False)
        return PullSource(_rewrite(ref, entry.prefix, entry.location), entry.insecure)

    def resolve_short_name(self, name: str, enforce: bool = True) -> list[Reference]:
        """Candidate references for ``name``; a qualified name is returned as is.

        In ``enforcing`` mode more than one candidate is refused (kiln cannot prompt),
        unless ``enforce`` is False (listing the candidates, as podman's resolve does).
        """
        if not is_short_name(name):
            return [Reference.parse(name)]
        base = Reference.parse(name)  # validates; normalises a tag/digest
        suffix = (f":{base.tag}" if base.tag else "") + (f"@{base.digest}" if base.digest else "")
        bare = name.split("@", 1)[0]
        if ":" in bare.rsplit("/", 1)[-1]:
            bare = bare.rsplit(":", 1)[0]
        alias = self.aliases.get(bare) or self.aliases.get(bare.removeprefix("library/"))
        if alias:
            return [Reference.parse(alias + suffix)]
        if not self.search:
            where = " or ".join(self.files) or "registries.conf"
            raise InvalidArgument(
                f'short-name "{name}" did not resolve to an alias and no unqualified-search '
                f"registries are defined in {where}; use a fully qualified name"
            )
        cands = [Reference.parse(f"{reg}/{bare}{suffix}") for reg in self.search]
        if enforce and self.short_name_mode == "enforcing" and len(cands) > 1:
            listed = ", ".join(str(c) for c in cands)
            raise InvalidArgument(
                f'short-name "{name}" is ambiguous: it could be {listed}; short-name-mode is '
                f'"enforcing" and kiln cannot prompt, so use a fully qualified name'
            )
        return cands


def _prefix_match(prefix: str, name: str) -> int:
    """Length of the match of ``prefix`` against ``name`` or -1 (wildcards ``*.host``)."""
    if prefix.startswith("*."):
        host = name.split("/", 1)[0]
        return len(prefix) if host.endswith(prefix[1:]) else -1
    if name == prefix or name.startswith(prefix + "/"):
        return len(prefix)
    return -1


def _rewrite(ref: Reference, prefix: str, location: str) -> Reference:
    if prefix.startswith("*.") or not location or location == prefix:
        return ref
    rest = ref.name[len(prefix) :]
    name = location + rest
    out = Reference.parse(name, default_tag=False)
    return Reference(out.domain, out.path, ref.tag, ref.digest)


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be true or false")
    return value


def _parse_entry(obj: object, path: str) -> RegistryEntry:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{path}: every [[registry]] must be a table")
    prefix = str(obj.get("prefix") or obj.get("location") or "")
    location = str(obj.get("location") or prefix)
    if not prefix:
        raise InvalidArgument(f"{path}: a [[registry]] needs a prefix or a location")
    mirrors = []
    for m in obj.get("mirror") or []:
        if not isinstance(m, dict) or not m.get("location"):
            raise InvalidArgument(f"{path}: every [[registry.mirror]] of {prefix} needs a location")
        mirrors.append(
            Mirror(str(m["location"]), _bool(m.get("insecure", False), f"{path}: insecure"))
        )
    return RegistryEntry(
        prefix=prefix.rstrip("/"),
        location=location.rstrip("/"),
        insecure=_bool(obj.get("insecure", False), f"{path}: insecure"),
        blocked=_bool(obj.get("blocked", False), f"{path}: blocked"),
        mirrors=tuple(mirrors),
        mirror_by_digest_only=_bool(
            obj.get("mirror-by-digest-only", False), f"{path}: mirror-by-digest-only"
        ),
    )


def _merge_file(conf: RegistriesConf, path: str) -> None:
    try:
        with open(path, "rb") as f:
            obj = tomllib.load(f)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid TOML: {exc}") from None
    conf.files.append(path)
    if "unqualified-search-registries" in obj:
        regs = obj["unqualified-search-registries"]
        if not isinstance(regs, list) or not all(isinstance(r, str) for r in regs):
            raise InvalidArgument(
                f"{path}: unqualified-search-registries must be a list of strings"
            )
        conf.search = list(regs)
    legacy = obj.get("registries")
    if isinstance(legacy, dict):  # version 1 format
        conf.search = list((legacy.get("search") or {}).get("registries", conf.search))
        for host in (legacy.get("insecure") or {}).get("registries", []):
            conf.registries.append(RegistryEntry(host, host, insecure=True))
        for host in (legacy.get("block") or {}).get("registries", []):
            conf.registries.append(RegistryEntry(host, host, blocked=True))
    if "short-name-mode" in obj:
        mode = obj["short-name-mode"] or "enforcing"
        if mode not in SHORT_NAME_MODES:
            raise InvalidArgument(
                f"{path}: short-name-mode must be one of {', '.join(SHORT_NAME_MODES)}"
            )
        conf.short_name_mode = mode
    if isinstance(obj.get("registry"), list):
        for raw in obj["registry"]:
            entry = _parse_entry(raw, path)
            conf.registries = [e for e in conf.registries if e.prefix != entry.prefix] + [entry]
    aliases = obj.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise InvalidArgument(f"{path}: [aliases] must be a table")
    conf.aliases.update({str(k): str(v) for k, v in aliases.items()})


def config_path(path: str | None = None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return path or env.get("KILN_REGISTRIES_CONF") or SYSTEM_PATH


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> RegistriesConf:
    """Read the main file (if it exists) and its ``registries.conf.d`` drop-ins."""
    main = config_path(path, env)
    conf = RegistriesConf()
    explicit = bool(path or (env if env is not None else os.environ).get("KILN_REGISTRIES_CONF"))
    if os.path.exists(main):
        _merge_file(conf, main)
    elif explicit:
        raise InvalidArgument(f"registries configuration {main} does not exist")
    dropins = os.path.join(os.path.dirname(main), "registries.conf.d")
    for extra in sorted(glob.glob(os.path.join(dropins, "*.conf"))):
        _merge_file(conf, extra)
    if not conf.files:
        conf.search = ["docker.io"]
    return conf
