"""Stage planning (kiln.build.stages)."""

from __future__ import annotations

import pytest

from kiln.build.args import BuildArgs
from kiln.build.parser import parse_string
from kiln.build.stages import plan
from kiln.errors import InvalidArgument

MULTI = """\
ARG BASE=busybox
FROM $BASE AS deps
RUN echo deps
FROM ${BASE}:1.36 AS tools
RUN echo tools
FROM deps AS build
COPY --from=tools /bin/tool /bin/
RUN echo build
FROM scratch AS unrelated
COPY --from=docker.io/library/alpine:3 /etc/os-release /
FROM scratch
COPY --from=build /out /out
"""


def make(text: str, target: str | None = None, **cli: str):
    return plan(parse_string(text), BuildArgs(cli, build_platform="linux/amd64"), target)


def test_default_target_is_last_stage_and_prunes() -> None:
    p = make(MULTI)
    assert p.target_index == 4
    assert p.order == (0, 1, 2, 4)  # "unrelated" is not needed
    assert p.deps == {0: set(), 1: set(), 2: {0, 1}, 4: {2}}


def test_levels_allow_parallel_independent_stages() -> None:
    assert make(MULTI).levels() == [[0, 1], [2], [4]]


def test_bases_are_expanded_with_global_args() -> None:
    p = make(MULTI, BASE="alpine")
    assert [s.base_expanded for s in p.stages] == [
        "alpine", "alpine:1.36", "deps", "scratch", "scratch",
    ]  # fmt: skip
    assert p.stages[0].base == "$BASE" and p.stages[0].base_used_args == {"BASE"}
    assert p.stages[2].base_stage == 0
    assert p.stages[3].is_scratch and not p.stages[2].is_scratch


def test_target_selects_stage_case_insensitively() -> None:
    p = make(MULTI, target="Build")
    assert p.target_index == 2 and p.order == (0, 1, 2)


def test_copy_from_image_is_external() -> None:
    p = make(MULTI, target="unrelated")
    assert p.order == (3,)
    assert p.stages[3].external_images == {"docker.io/library/alpine:3"}


def test_unknown_target() -> None:
    with pytest.raises(InvalidArgument, match='^target stage "nope" could not be found$'):
        make(MULTI, target="nope")


def test_numeric_copy_from() -> None:
    p = make("FROM a\nRUN x\nFROM b\nRUN y\nFROM c\nCOPY --from=0 /x /x\n")
    assert p.order == (0, 2) and p.deps[2] == {0}


def test_numeric_copy_from_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match="index out of bounds"):
        make("FROM a\nCOPY --from=5 /x /x\n")


def test_run_mount_from_stage_is_a_dependency() -> None:
    p = make("FROM a AS src\nFROM b\nRUN --mount=type=bind,from=src,target=/s ls /s\n")
    assert p.deps[1] == {0}


def test_copy_from_expanded_with_stage_args() -> None:
    text = "FROM a AS one\nFROM b AS two\nFROM c\nARG SRC=one\nCOPY --from=$SRC /x /x\n"
    assert make(text).deps[2] == {0}
    assert make(text, SRC="two").deps[2] == {1}


def test_duplicate_stage_names_refused() -> None:
    with pytest.raises(InvalidArgument, match='duplicate stage name "x"'):
        make("FROM a AS x\nFROM b AS X\n")


def test_instruction_before_from_refused() -> None:
    with pytest.raises(InvalidArgument, match="Dockerfile:1: no build stage in current context"):
        make("RUN x\nFROM a\n")


def test_only_earlier_stages_can_be_named() -> None:
    """FROM a later stage's name is an image (buildah, BuildKit); ``--from`` this or a later
    stage, by index or name, is refused (buildah finds no such stage or image, BuildKit 20.10
    copies from the later stage's base without its steps), so stages never form a circle."""
    p = make("FROM b AS a\nFROM a AS b\n")
    assert p.stages[0].base_stage is None and p.stages[1].base_stage == 0
    assert p.stage_named_from(0) is p.stages[1] and p.stage_named_from(1) is None
    p = make("FROM a AS one\nCOPY --from=img /x /x\nFROM b AS two\nCOPY --from=one /y /y\n")
    assert p.stages[0].external_images == {"img"} and p.stages[1].stage_deps == {0}
    for text in (
        "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n",
        "FROM a AS one\nCOPY --from=one /x /x\n",
        "FROM a\nCOPY --from=1 /x /x\nFROM b\n",
    ):
        with pytest.raises(InvalidArgument, match="refers to current or future build stage"):
            make(text)
    # a stage the target does not need is not built, whatever its --from names
    p = make("FROM a\nCOPY --from=later /l /l\nFROM b AS later\n")
    assert p.order == (1,) and p.stages[0].refused


def test_planning_does_not_consume_build_args() -> None:
    ba = BuildArgs({"SRC": "one"}, build_platform="linux/amd64")
    plan(parse_string("FROM a AS one\nFROM b\nARG SRC\nCOPY --from=$SRC / /\n"), ba)
    assert ba.unused() == ["SRC"]


def test_stage_instructions_exclude_from() -> None:
    p = make("FROM a\nRUN x\nCMD y\n")
    assert [i.name for i in p.stages[0].instructions] == ["RUN", "CMD"]
