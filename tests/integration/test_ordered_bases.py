"""Ordered bases on a real store (both backends): batch N+1 is handed over only once batch N
has completed or been discarded, whatever the worker's concurrency; a dead batch holds the
rest of its base until it is redriven or discarded."""

from __future__ import annotations

import pytest

from batchyard import BatchStatus, InvalidInput, RetryPolicy

BATCHES = 50


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


def deliver_all(yard, clock, rounds=40):
    """Run the worker (eight threads), moving time past each retry's backoff, until nothing
    is left to run."""
    for _ in range(rounds):
        yard.run_worker(wait=False, concurrency=8)
        clock.advance(60)


@pytest.mark.parametrize("ordered", [True, False])
def test_batches_of_an_ordered_base_arrive_in_sequence_order(yard, clock, ordered):
    """Every third batch fails its first attempt. Ordered, the batches arrive in sequence
    order; unordered (the same flow without the option), the ones behind a failed batch
    overtake it."""
    arrived = []

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence % 3 == 0 and ctx.attempt == 1:
            raise ConnectionError("first attempt of every third batch")
        arrived.append(ctx.sequence)

    yard.add_items(
        "events", list(range(2 * BATCHES)), max_batch_size=2, on_flush="sink", ordered=ordered
    )
    deliver_all(yard, clock)
    assert sorted(arrived) == list(range(BATCHES))
    if ordered:
        assert arrived == list(range(BATCHES))
        history = yard.get_flush_history("events", limit=200)
        # a batch waiting for the one before was never tried: only the failed ones retried
        assert sorted((r.sequence, r.attempt) for r in history if r.attempt > 1) == [
            (n, 2) for n in range(0, BATCHES, 3)
        ]
    else:
        assert arrived != list(range(BATCHES))


def test_ordered_adds_one_at_a_time_keep_their_order(yard, clock):
    """Batches closed one add at a time (each a transaction of its own), and by hand."""
    arrived = []

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence == 1 and ctx.attempt == 1:
            raise ConnectionError("down")
        arrived.append((ctx.sequence, list(items)))

    for n in range(7):
        yard.add_items("ev", [n], max_batch_size=2, on_flush="sink", ordered=True)
    yard.flush("ev")  # the last batch, closed by hand
    deliver_all(yard, clock)
    assert arrived == [(0, [0, 1]), (1, [2, 3]), (2, [4, 5]), (3, [6])]


def test_a_dead_batch_blocks_its_successors_until_discarded(yard, clock):
    arrived = []

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence == 1:
            raise ConnectionError("batch 1 never goes through")
        arrived.append(ctx.sequence)

    yard.add_items("ev", list(range(10)), max_batch_size=2, on_flush="sink", ordered=True)
    deliver_all(yard, clock)
    assert arrived == [0]
    dead, *waiting = yard.get_batch_status("ev")
    assert (dead.batch_id, dead.status, dead.blocked_by) == ("ev::1", BatchStatus.DEAD, None)
    assert [(b.batch_id, b.status, b.blocked_by, b.attempts) for b in waiting] == [
        (f"ev::{n}", BatchStatus.FLUSHING, "ev::1", 0) for n in range(2, 5)
    ]
    assert all(b.ordered for b in waiting)
    # nothing is due: an idle worker sleeps instead of claiming again and again
    assert yard.runtime.tasks.next_due(yard.runtime.now()) is None

    yard.discard_batch("ev::1")
    deliver_all(yard, clock)
    assert arrived == [0, 2, 3, 4]
    assert yard.get_batch_status("ev") == []


def test_a_redriven_dead_batch_goes_first_then_its_successors(yard, clock):
    arrived = []
    down = {"on": True}

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence == 0 and down["on"]:
            raise ConnectionError("down")
        arrived.append(ctx.sequence)

    yard.add_items("ev", list(range(6)), max_batch_size=2, on_flush="sink", ordered=True)
    deliver_all(yard, clock)
    assert arrived == []
    assert [b.blocked_by for b in yard.get_batch_status("ev")] == [None, "ev::0", "ev::0"]
    down["on"] = False
    yard.redrive_batch("ev::0")
    deliver_all(yard, clock)
    assert arrived == [0, 1, 2]


def test_ordered_must_be_a_bool(yard):
    @yard.handler("sink")
    def sink(items, ctx):
        pass

    with pytest.raises(InvalidInput) as caught:
        yard.add_items("ev", [1], max_batch_size=2, on_flush="sink", ordered="yes")
    assert caught.value.field == "ordered"
