"""Platforms (``os/arch[/variant]``), normalisation and matching."""

from __future__ import annotations

import platform as _host
from dataclasses import field
from typing import Any

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
# ``uname -m`` of 32-bit ARM machines (the host's name in ``Platform.host()``) -> OCI variant
_ARM_MACHINES = {"armv5l": "v5", "armv5tel": "v5", "armv6l": "v6", "armv7l": "v7", "armv8l": "v8"}
# operating systems a one-word platform may name (Go's GOOS values, as containerd's parser
# knows them): ``--platform linux`` is the host's architecture on linux, ``arm64`` is linux
#: what each part of a platform may be made of (containerd's platforms.Parse)
_SPECIFIER = lazy_pattern(r"[A-Za-z0-9_-]+")
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
))  # fmt: skip


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    arch = arch.lower()
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("", "v8", "8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch in _ARM_MACHINES:
        return "arm", _ARM_MACHINES[arch]
    if arch == "arm":
        v = variant or "v7"
        return "arm", v if v.startswith("v") else f"v{v}"
    return _ARCH_ALIASES.get(arch, arch), variant


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"platform {key} must be a string")
    return value


def _strings(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"platform {key} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture, variant and os.version."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default_factory=tuple)
    features: tuple[str, ...] = field(default_factory=tuple)  # Docker lists' (deprecated)

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """``linux/arm64/v8``, ``linux/amd64``, ``arm64`` (os defaults to linux), ``linux``
        (an os alone: the host's architecture and variant, as podman's ``--platform linux``)."""
        parts = [p for p in spec.strip().split("/")]
        if not spec.strip() or any(not p for p in parts) or len(parts) > 3:
            raise InvalidArgument(f'invalid platform "{spec}": expected os/arch[/variant]')
        if not all(_SPECIFIER().fullmatch(p) for p in parts):  # containerd's rule: no "..", NUL
            raise InvalidArgument(
                f"invalid platform {spec!r}: each of os/arch[/variant] is letters, digits, _ or -"
            )
        if len(parts) == 1 and parts[0].lower() in _KNOWN_OS:
            host = cls.host()
            return cls(parts[0].lower(), host.architecture, host.variant)
        if len(parts) == 1:
            os_name, arch, variant = "linux", parts[0], ""
        else:
            os_name, arch = parts[0].lower(), parts[1]
            variant = parts[2] if len(parts) == 3 else ""
        arch, variant = normalize_arch(arch, variant)
        return cls(os_name, arch, variant)

    @classmethod
    def host(cls) -> Platform:
        arch, variant = normalize_arch(_host.machine())
        return cls("linux", arch, variant)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Platform:
        if not isinstance(obj, dict):
            raise InvalidArgument("platform must be a JSON object")
        text = {k: _string(obj, k) for k in ("os", "architecture", "variant", "os.version")}
        arch, variant = normalize_arch(text["architecture"], text["variant"])
        return cls(
            text["os"],
            arch,
            variant,
            text["os.version"],
            _strings(obj, "os.features"),
            _strings(obj, "features"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.features:
            out["features"] = list(self.features)
        return out

    def matches(self, other: Platform) -> bool:
        """True if an image for ``other`` satisfies a request for ``self``."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        mine = self.variant or _DEFAULT_VARIANT.get(self.architecture, "")
        theirs = other.variant or _DEFAULT_VARIANT.get(other.architecture, "")
        return not mine or not theirs or mine == theirs

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)
