"""A Dockerfile nobody reviewed is refused in bounded time and memory: size, lines of
one instruction, instruction count and ${...} nesting are capped with a clear error."""

from __future__ import annotations

import io
import time

import pytest

from kiln.build import parser
from kiln.build.lexer import MAX_NESTING, ShellLex
from kiln.errors import InvalidArgument


def refused_quickly(text: str, match: str) -> None:
    start = time.monotonic()
    with pytest.raises(InvalidArgument, match=match):
        parser.parse_string(text)
    assert time.monotonic() - start < 10


def test_a_dockerfile_over_the_size_cap_is_refused():
    refused_quickly("FROM scratch\nRUN " + "a" * parser.MAX_DOCKERFILE_BYTES + "\n", "size limit")
    with pytest.raises(InvalidArgument, match="stdin is over the 2 MiB"):
        parser.read_capped(io.StringIO("#" * (parser.MAX_DOCKERFILE_BYTES + 1)), "stdin")


def test_a_million_continuation_lines_are_refused_not_parsed_for_minutes():
    refused_quickly("FROM scratch\nRUN a \\\n" + "b \\\n" * 1_000_000 + "c\n", "size limit")
    lines = parser.MAX_LINES_PER_INSTRUCTION
    refused_quickly(
        "FROM scratch\nRUN a \\\n" + "b \\\n" * lines + "c\n", r"Dockerfile:2: .*continued"
    )
    ok = parser.parse_string("FROM scratch\nRUN a \\\n" + "b \\\n" * (lines - 2) + "c\n")
    assert [n.instruction for n in ok.nodes] == ["FROM", "RUN"]


@pytest.mark.parametrize(
    "text",
    [
        "FROM scratch\n" + "".join(f"ENV A{i}=1\n" for i in range(50_000)),
        "".join(f"FROM scratch AS s{i}\n" for i in range(parser.MAX_INSTRUCTIONS + 1)),
    ],
    ids=["50k ENV", "5001 stages"],
)
def test_too_many_instructions_are_refused(text):
    refused_quickly(text, f"over the limit of {parser.MAX_INSTRUCTIONS}")


def test_deep_variable_expansion_is_an_error_not_a_recursion_error():
    lex = ShellLex()
    ok = "${a:-" * MAX_NESTING + "x" + "}" * MAX_NESTING
    assert lex.process_word(ok, {}) == "x"
    for depth in (MAX_NESTING + 1, 5000):
        with pytest.raises(InvalidArgument, match="nested more than"):
            lex.process_word("${a:-" * depth + "x" + "}" * depth, {})


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("FROM " + "a" * 70_000 + "\n", 1),
        ("# syntax=" + "a" * 70_000 + "\nFROM scratch\n", 1),
        ("\n# a comment\n\nFROM scratch " + "é" * 33_000 + "\nRUN true\n", 4),
    ],
    ids=["first instruction", "directive", "multibyte"],
)
def test_an_overlong_line_before_the_first_instruction_is_named(text, line):
    # the Go parser read it as an empty file: "the Dockerfile has no instructions"
    refused_quickly(text, f"^Dockerfile:{line}: dockerfile line greater than max allowed size")
