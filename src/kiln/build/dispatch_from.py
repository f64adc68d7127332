"""FROM: the stage's base (an earlier stage, ``scratch`` or an image) and its ONBUILD triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.build.cache_key import base_key
from kiln.build.instructions import Instruction, instruction_from_node
from kiln.build.parser import parse_string
from kiln.container import ConfigEditor
from kiln.errors import InvalidArgument

if TYPE_CHECKING:
    from kiln.build.stage_run import StageRun

__all__ = ["dispatch_from"]


def dispatch_from(run: StageRun) -> list[Instruction]:
    """Set the stage on its base; returns the base's ONBUILD triggers, to run next."""
    ex, stage = run.ex, run.stage
    if stage.base_stage is not None:
        base_id: str | None = ex.stage_image(stage.base_stage)
    elif stage.is_scratch:
        base_id = None
    else:
        base_id = ex.base_image(stage.base_expanded, stage.platform)
    run.base_id = run.image_id = base_id
    platform = ex.stage_platform(stage)
    if base_id is None:
        config = ex.scratch_config(platform if stage.platform else None)
    else:
        from kiln.image import open_store_image

        config = open_store_image(ex.store, base_id).config.evolve()
    run.editor = ConfigEditor(config)
    run.key = base_key(base_id, platform)
    triggers = list(config.config.on_build)
    if not triggers:
        return []
    run.editor.clear_onbuild()
    ex.progress.note(f"Running {len(triggers)} ONBUILD trigger(s) of the base image")
    return [_trigger(text, stage.line, ex.dockerfile_name) for text in triggers]


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
    import dataclasses

    return dataclasses.replace(instr, line=line)
