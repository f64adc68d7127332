"""created_by rendering (kiln.build.history), buildah's format."""

from __future__ import annotations

from kiln.build.history import created_by
from kiln.build.instructions import instructions_from_nodes
from kiln.build.parser import parse_string


def instr(text: str):
    return instructions_from_nodes(parse_string("FROM a\n" + text).nodes)[1]


def test_run_plain_and_with_args() -> None:
    run = instr("RUN echo hi")
    assert created_by(run) == "/bin/sh -c echo hi"
    assert created_by(run, build_args={"B": "2", "A": "1"}) == "|2 A=1 B=2 /bin/sh -c echo hi"


def test_run_keeps_flags_and_appends_heredocs() -> None:
    run = instr("RUN --network=none <<EOF\n  echo one\nEOF\n")
    assert created_by(run) == "/bin/sh -c --network=none <<EOF\necho one"


def test_nop_instructions() -> None:
    assert created_by(instr("ENV A=b")) == "/bin/sh -c #(nop) ENV A=b"
    assert created_by(instr('CMD ["sh"]')) == '/bin/sh -c #(nop) CMD ["sh"]'


def test_copy_and_add() -> None:
    copy = instr("COPY --link a /dst/")
    assert created_by(copy, content_summary="file:abc") == (
        "/bin/sh -c #(nop) COPY --link file:abc in /dst/ "
    )
    add = instr("ADD x.tar /")
    assert created_by(add, content_summary="file:def") == "/bin/sh -c #(nop) ADD file:def in / "


def test_arg_lists_build_arg_names() -> None:
    assert created_by(instr("ARG B A"), build_args={"B": "x", "A": "y"}) == (
        "/bin/sh -c #(nop) ARG A B"
    )
