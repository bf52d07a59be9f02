"""Where an add's items go in batches with byte limits: a pure decision."""

from __future__ import annotations

import pytest

from batchyard import InvalidInput
from batchyard.accumulator.sizing import Placement, item_sizes, place


def test_items_fill_the_open_batch_to_its_bytes_then_new_batches():
    in_open, new = place([30, 30, 50, 20, 10], (2, 50, 10, 100), 10, 60)
    assert in_open == Placement(taken=1, position=2, bytes_before=50, closed=True)
    assert new == [
        Placement(taken=1, position=0, bytes_before=0, closed=True),  # 30 + 50 > 60
        Placement(taken=1, position=0, bytes_before=0, closed=True),  # 50 + 20 > 60
        Placement(taken=2, position=0, bytes_before=0, closed=False),  # 30 of 60: open
    ]


def test_a_batch_exactly_full_in_bytes_is_closed_and_one_that_takes_nothing_too():
    in_open, new = place([40, 10], (1, 90, 10, 100), 10, 50)
    assert in_open == Placement(taken=0, position=1, bytes_before=90, closed=True)
    assert new == [Placement(taken=2, position=0, bytes_before=0, closed=True)]


def test_without_byte_limits_items_go_by_count_alone():
    in_open, new = place([0] * 11, (3, 0, 5, None), 5, None)
    assert in_open == Placement(taken=2, position=3, bytes_before=0, closed=True)
    assert [(p.taken, p.closed) for p in new] == [(5, True), (4, False)]


def test_an_item_larger_than_the_limit_is_refused_with_its_index():
    assert item_sizes(["1", '"é"'], 10) == [1, 4]
    with pytest.raises(InvalidInput, match=r"items\[1\] is 12 bytes") as raised:
        item_sizes(["1", '"' + "x" * 10 + '"'], 10)
    assert raised.value.index == 1
