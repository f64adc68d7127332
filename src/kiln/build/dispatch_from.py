"""FROM: the stage's base (an earlier stage, ``scratch`` or an image) and its ONBUILD triggers."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kiln.build.instructions import Instruction, instruction_from_node
from kiln.build.parser import parse_string
from kiln.build.stage_run import StageRun
from kiln.errors import InvalidArgument, KilnError
from kiln.oci import ImageConfig
from kiln.oci.config import DEFAULT_PATH
from kiln.oci.platform import Platform

if TYPE_CHECKING:
    from kiln.build.services import BuildServices

__all__ = ["dispatch_from"]


def dispatch_from(run: StageRun, build: BuildServices) -> list[Instruction]:
    """Set the stage on its base; returns the base's ONBUILD triggers, to run next."""
    stage = run.stage
    if stage.base_stage is not None:
        base_id: str | None = build.stage_image(stage.base_stage)
    elif stage.is_scratch:
        base_id = None
    else:
        try:
            base_id = build.base_image(stage.base_expanded, stage.platform)
        except KilnError as exc:
            _note_stage_named_so(exc, build, stage.index)
            raise
    platform = build.stage_platform(stage)
    note = ""
    if base_id is None:
        config = build.scratch_config(platform if stage.platform else None)
    else:
        config = build.open_image(base_id).config.evolve()
        if stage.instructions or config.config.on_build:  # a bare FROM keeps the base's
            config = _with_path(config)
        if stage.base_stage is None and not (stage.platform or build.opts.platform):
            _warn_if_foreign(build, stage.base_expanded, config)
        elif stage.base_stage is None:
            stamped = _with_asked_variant(config, platform)
            if stamped is not config:  # a key of its own: an older kiln kept no variant
                config, note = stamped, f" variant={stamped.variant}"
    run.set_base(base_id, config, platform, note)
    triggers = list(config.config.on_build)
    if not triggers:
        return []
    run.editor.clear_onbuild()
    build.progress.note(f"Running {len(triggers)} ONBUILD trigger(s) of the base image")
    return [_trigger(text, stage.line, build.dockerfile_name) for text in triggers]


def _with_path(config: ImageConfig) -> ImageConfig:
    """A Linux base's config with the default PATH appended when it sets none (an image
    made by ``docker import`` or ``podman import``), as BuildKit, the classic builder
    and buildah give the image they build on it (a stage of only its FROM, buildah's
    and the classic builder's, keeps the base's environment)."""
    if config.os not in ("", "linux") or any(e.startswith("PATH=") for e in config.config.env):
        return config
    return config.evolve(config=config.config.with_env("PATH", DEFAULT_PATH))


def _warn_if_foreign(build: BuildServices, ref: str, config: ImageConfig) -> None:
    """A base of another architecture taken with no platform asked for (a single-arch
    image): said once, as buildah and BuildKit's InvalidBaseImagePlatform check say it;
    the build goes on, its RUNs under emulation."""
    host = Platform.host()
    if config.architecture and config.architecture != host.architecture:
        build.progress.warning(
            f"FROM {ref}: the image is for {config.platform}, not this machine's {host}: "
            f"the image built is {config.platform} too, and its RUN steps run under emulation "
            f"(--platform {config.platform} says so and silences this)"
        )


def _with_asked_variant(config: ImageConfig, platform: str) -> ImageConfig:
    """The config with the variant asked for (``--platform linux/amd64/v2``, ``linux/arm/v7``)
    when its base names none: the image is for the platform built, as BuildKit and buildah
    stamp it, and its list entry says so. Another variant never matches a base this far."""
    asked = Platform.parse(platform)
    if config.variant or not asked.variant or config.architecture != asked.architecture:
        return config
    return config.evolve(variant=asked.variant)


def _note_stage_named_so(exc: KilnError, build: BuildServices, index: int) -> None:
    """An image FROM that is not found, where a stage at or after this one has that name:
    say that it is read as an image (buildah says only "b: image not known", BuildKit
    looks for docker.io/library/b)."""
    named = build.plan.stage_named_from(index)
    if named is not None:
        where = (
            "this stage's"
            if named.index == index
            else f"a later stage's, at {build.dockerfile_name}:{named.line}"
        )
        exc.message += (
            f' (FROM {named.name} reads the image "{named.name}": the name is {where}, and '
            "FROM names only an earlier stage)"
        )


def _trigger(text: str, line: int, name: str) -> Instruction:
    try:
        parsed = parse_string(text + "\n", name=f"{name} (ONBUILD)")
    except InvalidArgument as exc:
        raise InvalidArgument(f"{name}:{line}: the base image's ONBUILD {text!r}: {exc}") from None
    node = parsed.nodes[0]
    if node.instruction in ("ONBUILD", "FROM", "MAINTAINER"):
        raise InvalidArgument(
            f"{name}:{line}: {node.instruction} isn't allowed as an ONBUILD trigger"
        )
    instr = instruction_from_node(node, name)
    # triggers keep the FROM line's number, for errors
    return dataclasses.replace(instr, line=line)
