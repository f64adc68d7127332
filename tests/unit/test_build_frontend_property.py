"""Property: whatever the Dockerfile text, the front end (directives, parser, typed
instructions, stage plan, checks, word expansion) gives a plan or kiln's error, never
another exception, within a bounded time."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.build.args import BuildArgs
from kiln.build.checks import run_checks
from kiln.build.lexer import ShellLex
from kiln.build.parser import parse_string
from kiln.build.stages import plan
from kiln.errors import KilnError

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
BOUND = 5.0  # seconds for one Dockerfile, parse to plan and checks

KEYWORDS = ["FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR", "USER", "EXPOSE",
            "VOLUME", "CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "STOPSIGNAL",
            "MAINTAINER", "from", "NOPE"]  # fmt: skip
PIECES = ["a", "b", "$a", "${a}", "${a:-x}", "${a:+y}", "${a?err}", "${", "}", "$", "\\", "'",
          '"', "[", "]", ",", "=", "#", " ", "--from=a", "--chown=1:1", "--mount=type=cache,target=/c",
          "--network=none", "--platform=$BUILDPLATFORM", "AS", "as", "b0", "scratch", "<<EOF",
          "<<-E", "EOF", "/", "..", "*", "1/tcp", "\\\n", "\n", "\t", "é", "\x00", "--", "-",
          '["a"', '"b"]', "NONE", "--interval=5s", "CMD", "${a:-${b:-${c}}}", "%", "`"]  # fmt: skip
words = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
line = st.one_of(
    st.tuples(st.sampled_from(KEYWORDS), words).map(lambda t: f"{t[0]} {t[1]}"),
    st.sampled_from(
        [
            "# syntax=docker/dockerfile:1",
            "# escape=`",
            "# escape=x",
            "# check=skip=all",
            "EOF",
            "",
            "#",
            "FROM scratch AS a",
            "ARG a=1",
        ]
    ),  # fmt: skip
)
dockerfile = st.one_of(
    st.lists(line, min_size=1, max_size=10).map("\n".join),
    st.lists(line, min_size=1, max_size=10).map(lambda ls: "FROM busybox\n" + "\n".join(ls)),
    st.text(max_size=200),
)


def _front_end(text: str, build_args: dict[str, str]) -> None:
    try:
        parsed = parse_string(text)
    except KilnError:
        return
    for target in (None, "a"):
        try:
            plan(parsed, BuildArgs(build_args), target)
        except KilnError:
            pass
    try:
        report = run_checks(parsed, build_args=build_args)
    except KilnError:
        return  # a bad directive, or ${a?message} with a unset: the build fails the same way
    assert all(w.rule and w.message for w in report.warnings)


@SETTINGS
@given(
    text=dockerfile, build_args=st.dictionaries(st.sampled_from(["a", "b", "c"]), words, max_size=3)
)
@example(text="FROM busybox\nARG a=${a:-${a:-${a}}}\nRUN echo $a", build_args={})
@example(text="FROM ${a}\nFROM a", build_args={"a": "${a}"})
@example(text="ONBUILD ONBUILD RUN x", build_args={})
@example(text="FROM scratch\nCOPY <<EOF\n", build_args={})
@example(text="# escape=`\nFROM scratch\nRUN a `\n", build_args={})
@example(text="FROM scratch\nHEALTHCHECK --interval=-1s CMD x", build_args={})
@example(text="FROM scratch\nEXPOSE 99999999999999999999/tcp", build_args={})
def test_any_dockerfile_is_planned_or_refused_in_bounded_time(text, build_args):
    start = time.monotonic()
    _front_end(text, build_args)
    assert time.monotonic() - start < BOUND


@SETTINGS
@given(word=words, env=st.dictionaries(st.sampled_from(["a", "b", "c"]), words, max_size=3),
       escape=st.sampled_from(["\\", "`"]))  # fmt: skip
def test_word_expansion_is_a_value_or_kilns_error(word, env, escape):
    try:
        expansion = ShellLex(escape).expand(word, env)
    except KilnError:
        return
    assert isinstance(expansion.value, str)
    assert all(isinstance(w, str) for w in expansion.words)
