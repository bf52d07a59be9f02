"""Page sizes of an iterator job: fixed, or adapted to a target duration."""

from __future__ import annotations

import pytest

from batchyard import InvalidInput
from batchyard.iterator.pacing import Pacing


def test_a_fixed_size_stays():
    assert Pacing.checked(100, None, None, None).next_size(100, 5.0) == 100


def test_sizes_move_at_most_twofold_within_bounds():
    pacing = Pacing.checked(100, 1.0, 10, 300)
    assert pacing.next_size(100, 0.001) == 200  # far too fast: doubles, no more
    assert pacing.next_size(200, 0.001) == 300  # up to the bound
    assert pacing.next_size(100, 60.0) == 50  # far too slow: halves, no more
    assert pacing.next_size(12, 60.0) == 10
    assert pacing.next_size(100, 0.8) == 125


def test_a_handler_whose_time_grows_with_the_page_converges_on_the_target():
    pacing = Pacing.checked(10, 0.5, None, None)  # bounds 1 .. 100
    size = 10
    for _ in range(8):
        size = pacing.next_size(size, 0.01 * size)  # 10 ms an item: 50 items take 0.5 s
    assert size == 50


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((100, None, 5, None), "min_batch_size"),
        ((100, None, None, 500), "max_batch_size"),
        ((100, 0, None, None), "target_batch_seconds"),
        ((100, float("nan"), None, None), "target_batch_seconds"),
        ((100, True, None, None), "target_batch_seconds"),
        ((100, 1.0, 0, None), "min_batch_size"),
        ((100, 1.0, 200, None), "batch_size"),
        ((100, 1.0, None, 50), "batch_size"),
    ],
)
def test_bad_pacing_names_its_field(args, field):
    with pytest.raises(InvalidInput) as raised:
        Pacing.checked(*args)
    assert raised.value.fields["field"] == field
