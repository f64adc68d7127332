"""Build-arg scoping, as Docker does it.

- ``ARG`` before the first ``FROM`` declares a global arg, visible to every
  ``FROM`` line; inside a stage a global arg is visible only once re-declared
  (``ARG NAME`` without a value inherits the global value).
- ``--build-arg`` values override defaults, and count as consumed once any
  ``ARG`` declares the name; the rest are reported as unused.
- The proxy args (``HTTP_PROXY`` ...) need no declaration: a RUN sees them,
  but they stay out of history unless declared.
- ``TARGETPLATFORM``/``TARGETOS``/``TARGETARCH``/``TARGETVARIANT`` and the
  ``BUILD*`` equivalents come from the platform strings the caller passes;
  they are global (usable in ``FROM``) and, inside a stage, only when declared.
- In a stage, ``ENV`` overrides an ``ARG`` of the same name.
- ``BUILDKIT_INLINE_CACHE`` and ``BUILDKIT_CONTEXT_KEEP_GIT_DIR`` are options to the
  builder (an inline cache export, a git context's .git), never reported as unused.
- ``implicit`` args (``SOURCE_DATE_EPOCH`` from the environment) act as ``--build-arg``
  values the user did not type: used where declared, never reported as unused.
"""

from __future__ import annotations

import platform as _host
from collections.abc import Mapping

from kiln.build.instructions import Arg
from kiln.build.lexer import ShellLex

__all__ = ["BUILDER_ARGS", "PROXY_ARGS", "BuildArgs", "StageArgs", "platform_args"]

PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
    }
)  # fmt: skip
BUILDER_ARGS = frozenset({"BUILDKIT_INLINE_CACHE", "BUILDKIT_CONTEXT_KEEP_GIT_DIR"})
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def host_platform() -> str:
    machine = _host.machine().lower()
    return f"linux/{_ARCH.get(machine, machine)}"


def platform_args(target_platform: str, build_platform: str) -> dict[str, str]:
    """The automatic platform args for ``os/arch[/variant]`` strings."""
    result: dict[str, str] = {}
    for prefix, text in (("TARGET", target_platform), ("BUILD", build_platform)):
        parts = text.split("/")
        result[f"{prefix}PLATFORM"] = text
        result[f"{prefix}OS"] = parts[0]
        result[f"{prefix}ARCH"] = parts[1] if len(parts) > 1 else ""
        result[f"{prefix}VARIANT"] = parts[2] if len(parts) > 2 else ""
    return result


class BuildArgs:
    """Build-wide arg state: ``--build-arg`` values, global ARGs, consumption."""

    def __init__(
        self,
        build_args: Mapping[str, str] | None = None,
        *,
        target_platform: str | None = None,
        build_platform: str | None = None,
        implicit: Mapping[str, str] | None = None,
    ) -> None:
        self.cli = dict(implicit or {})
        self.cli.update(build_args or {})
        self.implicit = frozenset(implicit or ()) - frozenset(build_args or ())
        build = build_platform or host_platform()
        self.platform = platform_args(target_platform or build, build)
        self.globals: dict[str, str | None] = {}
        self.consumed: set[str] = set()

    # -- global scope --------------------------------------------------------

    def declare_global(self, name: str, default: str | None) -> None:
        """``ARG name[=default]`` before the first FROM (default already expanded)."""
        self.consumed.add(name)
        if name in self.cli:
            self.globals[name] = self.cli[name]
        elif default is not None:
            self.globals[name] = default
        else:
            self.globals.setdefault(name, self.platform.get(name))

    def apply_global(self, instr: Arg, lex: ShellLex) -> set[str]:
        """Expand and declare a global ARG instruction; return the names it used."""
        used: set[str] = set()
        for name, default in instr.args:
            value = None
            if default is not None:
                value, names = lex.process_word_with_matches(default, self.for_from())
                used |= names
            self.declare_global(name, value)
        return used

    def for_from(self) -> dict[str, str]:
        """The env ``FROM`` lines (and global ARG defaults) are expanded with."""
        env = dict(self.platform)
        env.update({k: v for k, v in self.globals.items() if v is not None})
        return env

    # -- stages --------------------------------------------------------------

    def stage(self) -> StageArgs:
        """A fresh scope for one stage (stages can run in parallel)."""
        return StageArgs(self)

    def unused(self) -> list[str]:
        """``--build-arg`` names no ARG declared (proxies and platform args excluded)."""
        skip = PROXY_ARGS | BUILDER_ARGS | self.platform.keys() | self.implicit
        return sorted(k for k in self.cli if k not in self.consumed and k not in skip)

    def unused_warning(self) -> str | None:
        names = self.unused()
        if not names:
            return None
        return f"[Warning] One or more build-args [{' '.join(names)}] were not consumed"


class StageArgs:
    """The args declared in one stage so far."""

    def __init__(self, build: BuildArgs) -> None:
        self.build = build
        self.declared: dict[str, str | None] = {}

    def declare(self, name: str, default: str | None) -> None:
        """``ARG name[=default]`` inside the stage (default already expanded)."""
        build = self.build
        build.consumed.add(name)
        if name in build.cli:
            value: str | None = build.cli[name]
        elif default is not None:
            value = default
        elif build.globals.get(name) is not None:
            value = build.globals[name]
        else:
            value = build.platform.get(name)
        self.declared[name] = value

    def apply(self, instr: Arg, lex: ShellLex, config_env: Mapping[str, str]) -> set[str]:
        """Expand and declare an ARG instruction; return the names its defaults used."""
        used: set[str] = set()
        for name, default in instr.args:
            value = None
            if default is not None:
                value, names = lex.process_word_with_matches(default, self.env(config_env))
                used |= names
            self.declare(name, value)
        return used

    def values(self) -> dict[str, str]:
        """Declared args that have a value."""
        return {k: v for k, v in self.declared.items() if v is not None}

    def env(self, config_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The env instructions of this stage are expanded with: ARGs, then ENV on top."""
        env = self.values()
        env.update(config_env or {})
        return env

    def stage_env(self, config_env: Mapping[str, str] | None = None) -> dict[str, str]:
        return self.env(config_env)

    def used_in_run(self, config_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The args recorded for a RUN (history and cache key): declared args with a
        value, where an ENV of the same name gives its value. Undeclared proxies
        are left out."""
        config_env = config_env or {}
        return {k: config_env.get(k, v) for k, v in self.values().items()}

    def run_env(self, config_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Extra environment a RUN process gets on top of the image's ENV:
        declared args and any ``--build-arg`` proxy values, never overriding ENV."""
        config_env = config_env or {}
        extra = {k: v for k, v in self.build.cli.items() if k in PROXY_ARGS}
        extra.update(self.values())
        return {k: v for k, v in extra.items() if k not in config_env}
