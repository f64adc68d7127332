"""The ``until`` filter of builder prune, one parser for ``kiln builder prune --filter`` and
the API's ``POST /build/prune?filters=``: a time or a duration back from now, the last one
given; any other filter, or a time that does not read, is refused before anything goes."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.ops.builder import prune_until


def test_until_is_epoch_seconds_and_the_last_one_wins():
    assert prune_until([]) is None
    assert prune_until(["until=1700000000"]) == 1_700_000_000
    assert prune_until(["until=2024-01-02"]) == 1_704_153_600
    assert prune_until(["until=1700000000", "until=1600000000.5"]) == 1_600_000_000.5


def test_a_duration_counts_back_from_now():
    import time

    before = time.time()
    until = prune_until(["until=24h"])
    assert until is not None and before - 86400 <= until <= time.time() - 86400


@pytest.mark.parametrize(
    "filters, message",
    [
        (["label=a=b"], 'invalid filter "label=a=b": builder prune takes until=TIME'),
        (["until"], 'invalid filter "until": use a duration (24h) or a time'),
        (["until=yesterday", "until=24h"], 'invalid filter "until=yesterday": use a duration'),
        (["until=24h", "dangling=true"], 'invalid filter "dangling=true": builder prune takes'),
    ],
)
def test_other_filters_and_unreadable_times_are_refused(filters, message):
    with pytest.raises(InvalidArgument) as err:
        prune_until(filters)
    assert str(err.value).startswith(message)


def test_the_refusal_names_the_verb_it_came_from():
    with pytest.raises(InvalidArgument, match="kiln's builder prune takes until=TIME"):
        prune_until(["label=x"], "kiln's builder prune")
