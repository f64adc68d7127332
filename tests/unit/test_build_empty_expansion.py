"""EXPOSE and STOPSIGNAL whose words expand to nothing are refused, as buildah refuses
them (BuildKit too for STOPSIGNAL); a value is kept."""

from __future__ import annotations

import pytest

from kiln.build.instructions import instructions_from_nodes
from kiln.build.lexer import ShellLex
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument


def _expand(line: str, env: dict[str, str]):
    instr = instructions_from_nodes(parse_string(f"FROM a\n{line}").nodes)[1]
    return instr.expand(ShellLex(), env)[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("EXPOSE $UNSET", "EXPOSE requires at least one argument"),
        ("STOPSIGNAL $UNSET", "STOPSIGNAL: invalid signal: it is empty"),
    ],
)
def test_an_instruction_that_expands_to_nothing_is_refused(line, message):
    with pytest.raises(InvalidArgument, match=message):
        _expand(line, {})


def test_a_value_is_kept():
    assert _expand("EXPOSE $P", {"P": "80 53/udp"}).ports == ("80/tcp", "53/udp")
    assert _expand("STOPSIGNAL $S", {"S": "SIGUSR1"}).value == "SIGUSR1"
