"""COPY/ADD destinations that are empty: the working directory, as buildah and BuildKit
take them; too few arguments are still refused."""

from __future__ import annotations

import pytest

from kiln.build.instructions import instructions_from_nodes
from kiln.build.lexer import ShellLex
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument


def _instr(line: str):
    return instructions_from_nodes(parse_string(f"FROM a\n{line}").nodes)[1]


@pytest.mark.parametrize(
    "line",
    ["COPY f $UNSET", "COPY f ${UNSET}", 'COPY ["f", ""]', "ADD f $UNSET", 'ADD ["f", ""]'],
)
def test_a_destination_that_is_empty_is_the_workdir(line: str) -> None:
    instr, _ = _instr(line).expand(ShellLex(), {})
    assert (instr.sources, instr.dest) == (("f",), ".")


def test_a_destination_that_expands_to_something_is_kept() -> None:
    instr, _ = _instr("COPY f $D").expand(ShellLex(), {"D": "/dst/"})
    assert instr.dest == "/dst/"


@pytest.mark.parametrize("line", ["COPY f", 'COPY ["f"]', "ADD f"])
def test_one_argument_is_refused(line: str) -> None:
    with pytest.raises(InvalidArgument, match="requires at least two arguments"):
        _instr(line)
