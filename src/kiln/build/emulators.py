"""Emulators checked before a build starts: a RUN of a foreign platform needs one.

``check_emulators(parsed, build_args, target, platforms)`` looks at the stages each target
platform builds: a stage with a RUN runs for its ``FROM --platform``, else for its base
stage's platform, else for the build's. Each platform this machine cannot run natively
gets its binfmt_misc handler (``kiln.runtime.binfmt.ensure_emulator``) now, or the build
fails at once naming the platform, the first such RUN and the fix, before any base is
pulled or any step run (for every platform of a multi-platform build). Without this, a
missing emulator showed only at that RUN, after the steps before it (and the other
platforms' builds) had run.

A build whose platforms are all native and whose stages fix no ``--platform`` costs
nothing here: no plan, no binfmt_misc. A foreign base found only when FROM resolves it
(no ``--platform`` asked) is still checked at its RUN (``dispatch_run``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from kiln.build.args import BuildArgs
from kiln.build.instructions import Run
from kiln.build.parser import ParsedDockerfile
from kiln.build.stages import BuildPlan, Stage, plan
from kiln.errors import Unavailable
from kiln.oci.platform import Platform

__all__ = ["check_emulators", "run_platforms"]


def _fixes_platform(parsed: ParsedDockerfile) -> bool:
    """Does any FROM carry ``--platform``? (Read from the parsed flags, no plan needed.)"""
    return any(
        n.instruction == "FROM" and any(f.lower().startswith("--platform") for f in n.flags)
        for n in parsed.nodes
    )


def _stage_platform(built: BuildPlan, stage: Stage, default: str) -> str:
    """The platform a stage's RUNs run for: its own ``--platform``, else its base stage's."""
    while stage.platform is None and stage.base_stage is not None:
        stage = built.stages[stage.base_stage]
    return str(Platform.parse(stage.platform)) if stage.platform else default


def run_platforms(built: BuildPlan, default: str, dockerfile: str) -> dict[str, str]:
    """Each platform a RUN of the planned stages runs for -> where its first RUN is."""
    found: dict[str, str] = {}
    for index in built.order:
        stage = built.stages[index]
        first = next((i for i in stage.instructions if isinstance(i, Run)), None)
        if first is not None:
            found.setdefault(_stage_platform(built, stage, default), f"{dockerfile}:{first.line}")
    return found


def check_emulators(
    parsed: ParsedDockerfile,
    build_args: Mapping[str, str],
    target: str | None,
    platforms: Collection[str | None],
    *,
    dockerfile: str = "Containerfile",
    named: Collection[str] = (),
) -> None:
    """Raise ``Unavailable`` if a RUN of these target platforms (None: the host's) cannot
    run here and no emulator can be had; register qemu-user-static's handlers if need be."""
    host = Platform.host()
    foreign = any(p and Platform.parse(p).architecture != host.architecture for p in platforms)
    if not foreign and not _fixes_platform(parsed):
        return
    # start-up: the emulator code only for builds that name a foreign platform
    from kiln.runtime.binfmt import ensure_emulator, host_arch, needs_emulation

    for target_platform in platforms:
        args = BuildArgs(build_args, target_platform=target_platform)
        built = plan(parsed, args, target, named=named)
        default = target_platform or str(host)
        for platform, where in run_platforms(built, default, dockerfile).items():
            arch = Platform.parse(platform).architecture
            if not needs_emulation(arch):
                continue
            try:
                ensure_emulator(arch)
            except Unavailable as exc:
                raise Unavailable(
                    f"cannot build for {platform}: the RUN at {where} needs an emulator "
                    f"on this linux/{host_arch()} machine: {exc}"
                ) from None
