"""Trends: the flush history in buckets of an hour or a day, on both stores, with a manual
clock - items flushed, failures, flush time and the backlog at each bucket's end."""

from __future__ import annotations

import pytest

from batchyard import RetryPolicy
from batchyard.errors import InvalidInput
from batchyard.trends import Trends
from tests.conftest import CLOCK_START

HOUR = 3600.0


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=1))
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("boom")
    def boom(items, ctx):
        raise RuntimeError("the sink is down")

    return yard


def test_each_hour_counts_its_flushes_and_the_backlog_at_its_end(yard, clock):
    assert CLOCK_START % HOUR == 0  # the first flush opens an hour
    yard.add_items("a", [1, 2, 3], max_batch_size=10, on_flush="ok")
    clock.advance(60)
    yard.flush("a")
    yard.run_worker(wait=False)  # hour 0: 3 items delivered
    yard.add_items("b", [1, 2], max_batch_size=10, on_flush="boom")  # waits past hour 0
    clock.advance(HOUR)
    yard.flush("b")
    yard.run_worker(wait=False)  # hour 1: a failed flush of 2 items; b is dead, still waiting
    yard.add_items("c", [1, 2, 3, 4], max_batch_size=10, on_flush="ok")

    trend = Trends(yard.store, clock).trend("hour")
    assert len(trend.buckets) == 24 and trend.width_seconds == HOUR
    earlier, first, last = trend.buckets[-3], trend.buckets[-2], trend.buckets[-1]
    assert first.start.timestamp() == CLOCK_START and last.start.timestamp() == CLOCK_START + HOUR
    assert (earlier.flushes, earlier.backlog) == (0, 0)
    assert (first.flushes, first.items_flushed, first.failed_flushes) == (1, 3, 0)
    assert first.mean_duration_seconds is not None and first.backlog == 2  # b, made in hour 0
    assert (last.flushes, last.items_flushed, last.failed_flushes, last.failed_items) == (
        1,
        0,
        1,
        2,
    )
    assert last.backlog == 6  # b (dead) and c (accumulating)

    day = Trends(yard.store, clock).trend("day").buckets
    assert len(day) == 14 and day[-1].flushes == 2 and day[-1].items_flushed == 3
    assert day[-1].failed_flushes == 1 and day[-1].backlog == 6


def test_an_unknown_range_names_the_field(yard):
    with pytest.raises(InvalidInput, match="range must be one of hour, day") as error:
        Trends(yard.store).trend("week")
    assert error.value.field == "range"
