"""kiln.build.parser keeps nothing of the Dockerfiles it parsed: a long-running
``kiln serve`` parses one per build (the ``dockerfile`` package leaked ~1 kB each)."""

from __future__ import annotations

import gc
import tracemalloc

from kiln.build.parser import parse_string

TEXT = (
    "FROM base\n"
    "RUN --mount=type=cache,target=/c echo {n} > /n\n"
    "RUN <<EOT sh\necho {n}\nEOT\n"
    "LABEL n={n}\n"
)


def test_parsing_thousands_of_dockerfiles_keeps_no_memory():
    for n in range(50):
        parse_string(TEXT.format(n=n))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2000):
            parsed = parse_string(TEXT.format(n=n))
        assert parsed.nodes[1].original.startswith("RUN --mount=type=cache")
        del parsed
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"{grown} bytes kept after 2000 parses"


def test_parsed_values_survive_the_release():
    first = parse_string(TEXT.format(n=7))
    for n in range(100):
        parse_string(TEXT.format(n=n))
    gc.collect()
    node = first.nodes[2]
    assert node.heredocs[0].body == "echo 7\n"
    assert first.nodes[3].original == "LABEL n=7"
