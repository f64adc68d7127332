"""kiln.util.choices: one vocabulary of pull policies for every command and route."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.util.choices import PULL_POLICIES, PullPolicy


@pytest.mark.parametrize(
    ("text", "policy"),
    [("always", "always"), ("TRUE", "always"), ("missing", "missing"), ("false", "missing"),
     ("IfMissing", "missing"), ("never", "never"), ("newer", "newer"), ("ifnewer", "newer"),
     (" never ", "never")],
)  # fmt: skip
def test_podman_spellings(text, policy):
    assert PullPolicy.parse(text) == policy


def test_anything_else_is_refused_with_the_choices():
    with pytest.raises(InvalidArgument, match='invalid pull policy "sometimes": use one of always'):
        PullPolicy.parse("sometimes")


def test_the_choices_commands_offer():
    assert PULL_POLICIES == ("always", "missing", "never", "newer")
