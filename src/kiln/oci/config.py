"""The image configuration: image-spec fields plus Docker's extensions.

``ImageConfig.parse`` keeps the exact bytes (``raw``) so the image ID — the
config digest — is always of the bytes as stored. Edits go through
``dataclasses.replace`` and ``to_bytes`` makes new canonical bytes.
Unknown top-level and container-config keys survive a round trip in ``extra``.
"""

from __future__ import annotations

from dataclasses import field, replace
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci.digest import Digest
from kiln.oci.platform import Platform
from kiln.oci.strict_json import (
    MAX_CONFIG_BYTES,
    canonical,
    expect,
    expect_int,
    expect_strings,
    loads_object,
)
from kiln.util.lazy_dataclass import dataclass

# the PATH Docker, buildah and runc users get when an image sets none
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Healthcheck:
    """An image's HEALTHCHECK, with durations in nanoseconds."""

    test: tuple[str, ...] = ()
    interval: int = 0  # nanoseconds, as Docker stores them
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Healthcheck:
        return cls(
            expect_strings(obj.get("Test"), "Healthcheck.Test"),
            expect_int(obj.get("Interval"), "Healthcheck.Interval"),
            expect_int(obj.get("Timeout"), "Healthcheck.Timeout"),
            expect_int(obj.get("StartPeriod"), "Healthcheck.StartPeriod"),
            expect_int(obj.get("StartInterval"), "Healthcheck.StartInterval"),
            expect_int(obj.get("Retries"), "Healthcheck.Retries"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out


_RUNTIME_KEYS = {
    "User": ("user", str),
    "ExposedPorts": ("exposed_ports", dict),
    "Env": ("env", list),
    "Entrypoint": ("entrypoint", list),
    "Cmd": ("cmd", list),
    "Volumes": ("volumes", dict),
    "WorkingDir": ("working_dir", str),
    "Labels": ("labels", dict),
    "StopSignal": ("stop_signal", str),
    "ArgsEscaped": ("args_escaped", bool),
    "OnBuild": ("on_build", list),
    "Shell": ("shell", list),
}


@dataclass(frozen=True)
class RuntimeConfig:
    """The ``config`` object: what a container made from the image runs with."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> RuntimeConfig:
        if not obj:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidArgument("image config 'config' must be an object")
        kwargs: dict[str, Any] = {}
        extra = {}
        for key, value in obj.items():
            if key == "Healthcheck":
                if value:
                    kwargs["healthcheck"] = Healthcheck.from_json(
                        expect(value, dict, "Healthcheck")
                    )
            elif key in _RUNTIME_KEYS:
                name, kind = _RUNTIME_KEYS[key]
                value = expect(value, kind, f"config.{key}")
                if value is None:
                    continue
                if kind is dict and name in ("exposed_ports", "volumes"):
                    value = tuple(value)
                elif kind is list:
                    value = tuple(str(v) for v in value)
                kwargs[name] = value
            else:
                extra[key] = value
        return cls(**kwargs, extra=extra)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def with_env(self, key: str, value: str, *, in_place: bool = False) -> RuntimeConfig:
        """``key`` set to ``value``. A variable already set moves to the end, as
        ``buildah config --env`` does, or keeps its place with ``in_place`` (a
        Dockerfile's ENV, in buildah and BuildKit alike)."""
        entry = f"{key}={value}"
        names = [e.partition("=")[0] for e in self.env]
        if in_place and key in names:
            env = [entry if name == key else e for name, e in zip(names, self.env, strict=True)]
            return replace(self, env=tuple(dict.fromkeys(env)))
        env = [e for name, e in zip(names, self.env, strict=True) if name != key]
        return replace(self, env=(*env, entry))

    def without_env(self, key: str) -> RuntimeConfig:
        return replace(self, env=tuple(e for e in self.env if e.partition("=")[0] != key))


@dataclass(frozen=True)
class History:
    """One entry of an image config's history."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> History:
        if not isinstance(obj, dict):
            raise InvalidArgument("image config history entries must be objects")
        return cls(
            obj.get("created", "") or "",
            obj.get("created_by", "") or "",
            obj.get("author", "") or "",
            obj.get("comment", "") or "",
            bool(obj.get("empty_layer", False)),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


_TOP_KEYS = {
    "created",
    "author",
    "architecture",
    "os",
    "variant",
    "os.version",
    "os.features",
    "config",
    "rootfs",
    "history",
}


@dataclass(frozen=True)
class ImageConfig:
    """An OCI image config: the runtime defaults, rootfs and history."""

    created: str = ""
    author: str = ""
    architecture: str = ""
    os: str = "linux"
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    config: RuntimeConfig = field(default_factory=RuntimeConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[History, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        obj = loads_object(raw, what="image config", limit=MAX_CONFIG_BYTES)
        rootfs = expect(obj.get("rootfs") or {}, dict, "rootfs")
        diff_ids = expect(rootfs.get("diff_ids") or [], list, "rootfs.diff_ids")
        for d in diff_ids:
            Digest.parse(d if isinstance(d, str) else "")
        history = expect(obj.get("history") or [], list, "history")
        return cls(
            created=expect(obj.get("created", ""), str, "created") or "",
            author=expect(obj.get("author", ""), str, "author") or "",
            architecture=expect(obj.get("architecture", ""), str, "architecture") or "",
            os=expect(obj.get("os", ""), str, "os") or "",
            variant=expect(obj.get("variant", ""), str, "variant") or "",
            os_version=expect(obj.get("os.version", ""), str, "os.version") or "",
            os_features=expect_strings(obj.get("os.features"), "os.features"),
            config=RuntimeConfig.from_json(obj.get("config")),
            diff_ids=tuple(diff_ids),
            history=tuple(History.from_json(h) for h in history),
            extra={k: v for k, v in obj.items() if k not in _TOP_KEYS},
            raw=raw,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    def to_bytes(self) -> bytes:
        """The stored bytes if parsed and unchanged, else new canonical bytes."""
        return self.raw if self.raw else canonical(self.to_json())

    def evolve(self, **changes: Any) -> ImageConfig:
        """A changed copy; its bytes are re-made, never the old ``raw``."""
        return replace(self, raw=b"", **changes)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.to_bytes())

    @property
    def platform(self) -> Platform:
        return Platform(self.os or "linux", self.architecture, self.variant, self.os_version)

    def non_empty_history(self) -> list[History]:
        return [h for h in self.history if not h.empty_layer]
