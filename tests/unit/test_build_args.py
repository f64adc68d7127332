"""Build-arg scoping (kiln.build.args)."""

from __future__ import annotations

from kiln.build.args import BuildArgs, platform_args
from kiln.build.instructions import Arg, instructions_from_nodes
from kiln.build.lexer import ShellLex
from kiln.build.parser import parse_string

LEX = ShellLex()


def arg(text: str) -> Arg:
    instr = instructions_from_nodes(parse_string(f"FROM a\n{text}").nodes)[1]
    assert isinstance(instr, Arg)
    return instr


def test_platform_args_split_os_arch_variant() -> None:
    args = platform_args("linux/arm64/v8", "linux/amd64")
    assert args["TARGETPLATFORM"] == "linux/arm64/v8"
    assert (args["TARGETOS"], args["TARGETARCH"], args["TARGETVARIANT"]) == ("linux", "arm64", "v8")
    assert (args["BUILDARCH"], args["BUILDVARIANT"]) == ("amd64", "")


def test_global_arg_visible_in_from_and_overridden_by_cli() -> None:
    ba = BuildArgs({"TAG": "2"}, target_platform="linux/amd64", build_platform="linux/amd64")
    ba.apply_global(arg("ARG TAG=1 BASE=busybox:${TAG}"), LEX)
    env = ba.for_from()
    assert env["TAG"] == "2"
    assert env["BASE"] == "busybox:2"  # default expanded with the cli value
    assert env["TARGETARCH"] == "amd64"


def test_global_arg_needs_redeclaration_in_stage() -> None:
    ba = BuildArgs({}, build_platform="linux/amd64")
    ba.declare_global("VERSION", "1.0")
    stage = ba.stage()
    assert "VERSION" not in stage.env({})
    stage.declare("VERSION", None)
    assert stage.env({})["VERSION"] == "1.0"


def test_stage_default_and_cli_override() -> None:
    ba = BuildArgs({"A": "cli"}, build_platform="linux/amd64")
    stage = ba.stage()
    stage.apply(arg("ARG A=default B=b C"), LEX, {})
    assert stage.values() == {"A": "cli", "B": "b"}  # C declared without value: unset


def test_arg_default_can_use_earlier_args_and_env() -> None:
    ba = BuildArgs({}, build_platform="linux/amd64")
    stage = ba.stage()
    stage.apply(arg("ARG A=x"), LEX, {})
    used = stage.apply(arg("ARG B=${A}-$HOME"), LEX, {"HOME": "/root"})
    assert stage.values()["B"] == "x-/root"
    assert used == {"A", "HOME"}


def test_env_overrides_arg() -> None:
    ba = BuildArgs({"V": "from-arg"}, build_platform="linux/amd64")
    stage = ba.stage()
    stage.declare("V", None)
    assert stage.env({"V": "from-env"})["V"] == "from-env"
    assert stage.used_in_run({"V": "from-env"}) == {"V": "from-env"}
    assert stage.run_env({"V": "from-env"}) == {}


def test_platform_args_in_stage_only_when_declared() -> None:
    ba = BuildArgs({}, target_platform="linux/arm/v7", build_platform="linux/amd64")
    stage = ba.stage()
    assert "TARGETARCH" not in stage.env({})
    stage.declare("TARGETARCH", None)
    stage.declare("TARGETVARIANT", None)
    assert stage.values() == {"TARGETARCH": "arm", "TARGETVARIANT": "v7"}


def test_proxy_args_reach_run_but_not_history_unless_declared() -> None:
    ba = BuildArgs({"HTTP_PROXY": "http://p:3128", "no_proxy": "x"}, build_platform="linux/amd64")
    stage = ba.stage()
    assert stage.run_env({}) == {"HTTP_PROXY": "http://p:3128", "no_proxy": "x"}
    assert stage.used_in_run({}) == {}
    stage.declare("HTTP_PROXY", None)
    assert stage.used_in_run({}) == {"HTTP_PROXY": "http://p:3128"}


def test_unused_build_args_reported() -> None:
    ba = BuildArgs({"USED": "1", "FOO": "2", "BAR": "3", "HTTP_PROXY": "p"})
    ba.stage().declare("USED", None)
    assert ba.unused() == ["BAR", "FOO"]
    assert ba.unused_warning() == "[Warning] One or more build-args [BAR FOO] were not consumed"


def test_builder_options_are_not_unused_build_args() -> None:
    ba = BuildArgs({"BUILDKIT_INLINE_CACHE": "1", "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1"})
    assert ba.unused() == [] and ba.unused_warning() is None


def test_global_declaration_consumes() -> None:
    ba = BuildArgs({"G": "1"})
    ba.declare_global("G", None)
    assert ba.unused() == [] and ba.unused_warning() is None


def test_source_date_epoch_from_the_environment_is_an_implicit_build_arg() -> None:
    # as BuildKit (buildx passes $SOURCE_DATE_EPOCH as a build arg): ARG SOURCE_DATE_EPOCH
    # gets the value, and a build that never declares it gets no unused-arg warning
    sde = {"SOURCE_DATE_EPOCH": "1700000000"}
    ba = BuildArgs({}, implicit=sde)
    stage = ba.stage()
    stage.apply(arg("ARG SOURCE_DATE_EPOCH"), LEX, {})
    assert stage.values() == {"SOURCE_DATE_EPOCH": "1700000000"}
    assert BuildArgs({}, implicit=sde).unused_warning() is None
    # undeclared, a RUN does not see it
    assert "SOURCE_DATE_EPOCH" not in BuildArgs({}, implicit=sde).stage().run_env({})
    # a --build-arg of the same name wins, and counts as the user's (reported if unused)
    ba = BuildArgs({"SOURCE_DATE_EPOCH": "5"}, implicit=sde)
    assert ba.unused() == ["SOURCE_DATE_EPOCH"]
    stage = ba.stage()
    stage.apply(arg("ARG SOURCE_DATE_EPOCH=0"), LEX, {})
    assert stage.values() == {"SOURCE_DATE_EPOCH": "5"}
