"""podman 4.3's image filters the libpod route reads itself (``after``, ``containers``,
``readonly``); the parity suite checks them against podman, this what a store with
working containers answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kiln.api.libpod_filters import split_filters
from kiln.errors import InvalidArgument

USED, UNUSED = SimpleNamespace(containers=2), SimpleNamespace(containers=0)


def test_after_is_since_and_the_rest_go_to_the_use_case() -> None:
    passed, checks = split_filters(["after=a:1", "label=x", "dangling=true"])
    assert passed == ["since=a:1", "label=x", "dangling=true"] and checks == []


@pytest.mark.parametrize(
    "item, used, unused",
    [("containers=true", True, False), ("containers=0", False, True),
     ("readonly=false", True, True), ("readonly=TRUE", False, False)],
)  # fmt: skip
def test_containers_and_readonly(item: str, used: bool, unused: bool) -> None:
    passed, [check] = split_filters([item])
    assert passed == [] and check(USED) is used and check(UNUSED) is unused


def test_a_value_that_is_no_boolean_is_refused() -> None:
    with pytest.raises(InvalidArgument, match='invalid filter "containers=maybe"'):
        split_filters(["containers=maybe"])
