"""Dead batches can be read item by item and discarded (both backends)."""

from __future__ import annotations

import pytest

from batchyard import (
    BatchStatus,
    Conflict,
    InvalidInput,
    ItemFailures,
    NotFound,
    RetryPolicy,
)

BIG = 2**64 - 1  # the largest integer stored exactly: comes back an int, not a float


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=2, jitter=0), retention=3600)

    @yard.handler("picky")
    def picky(items, ctx):
        # the items at odd positions always fail, with their reason
        raise ItemFailures({i: f"no {item['n']}" for i, item in enumerate(items) if item["n"] % 2})

    @yard.handler("down")
    def down(items, ctx):
        raise ConnectionError("sink is down")

    return yard


def kill(yard, clock, base, items, handler):
    """Add `items` in one batch and run its flush until it is dead."""
    yard.add_items(base, items, max_batch_size=len(items), on_flush=handler)
    for _ in range(3):
        yard.run_worker(wait=False)
        clock.advance(60)
    [dead] = yard.get_batch_status(base)
    assert dead.status == BatchStatus.DEAD
    return dead.batch_id


def test_items_come_back_exactly_with_their_failure_reasons_page_by_page(yard, clock):
    items = [{"n": n, "big": BIG, "text": "é\u2028"} for n in range(5)]
    batch_id = kill(yard, clock, "ev", items, "picky")
    page = yard.get_batch_items(batch_id, limit=3)
    assert [(i.position, i.payload, i.error) for i in page] == [
        (0, items[0], None),
        (1, items[1], "no 1"),
        (2, items[2], None),
    ]
    assert page[0].payload["big"] == BIG and isinstance(page[0].payload["big"], int)
    rest = yard.get_batch_items(batch_id, after=page[-1].position, limit=3)
    assert [(i.position, i.error) for i in rest] == [(3, "no 3"), (4, None)]
    assert yard.get_batch_items(batch_id, after=4) == []


def test_items_of_a_batch_in_any_status(yard, clock):
    yard.add_items("open", [{"n": 1}], max_batch_size=5, on_flush="down")
    assert [i.payload for i in yard.get_batch_items("open::0")] == [{"n": 1}]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("ev",), "batch_id"),
        (("ev::0",), None),
        (("",), "batch_id"),
    ],
)
def test_reading_items_refuses_bad_ids_and_names_no_batch(yard, args, field):
    if field is None:
        with pytest.raises(NotFound):
            yard.get_batch_items(*args)
        return
    with pytest.raises(InvalidInput) as raised:
        yard.get_batch_items(*args)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": True}, "after"),
        ({"after": "3"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": 2.5}, "limit"),
    ],
)
def test_reading_items_refuses_bad_paging_naming_the_field(yard, options, field):
    with pytest.raises(InvalidInput) as raised:
        yard.get_batch_items("ev::0", **options)
    assert raised.value.field == field


def test_a_dead_batch_is_discarded_into_the_books_and_pruned_like_a_completed_one(yard, clock):
    batch_id = kill(yard, clock, "ev", [{"n": 0}, {"n": 1}, {"n": 2}], "down")
    with yard.store.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM batchyard_dead_tasks")["n"] == 1

    result = yard.discard_batch(batch_id)

    assert (result.batch_id, result.item_count, result.status) == (batch_id, 3, "discarded")
    assert yard.get_batch_status("ev") == []  # nothing active, nothing pending
    [batch] = yard.get_batch_status(batch_id)
    assert (batch.status, batch.pending_count) == (BatchStatus.DISCARDED, 0)
    assert yard.list_dead_batches() == []
    [record, *attempts] = yard.get_flush_history("ev")
    assert (record.outcome, record.reason, record.item_count, record.attempt) == (
        "discarded",
        "discard",
        3,
        3,
    )
    assert "ConnectionError: sink is down" in record.error
    assert [a.outcome for a in attempts] == ["failed", "failed"]
    with yard.store.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM batchyard_dead_tasks")["n"] == 0
    # the items stay readable until the retention prunes the batch
    assert [i.payload for i in yard.get_batch_items(batch_id)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    with pytest.raises(Conflict):
        yard.redrive_batch(batch_id)
    clock.advance(3601)
    assert yard._accumulator.pruner.prune(yard.retention) == 1
    with pytest.raises(NotFound):
        yard.get_batch_items(batch_id)


def test_only_a_dead_batch_can_be_discarded(yard, clock):
    yard.add_items("open", [{"n": 1}], max_batch_size=5, on_flush="down")
    with pytest.raises(Conflict) as raised:
        yard.discard_batch("open::0")
    assert "accumulating" in str(raised.value)
    batch_id = kill(yard, clock, "ev", [{"n": 0}], "down")
    yard.discard_batch(batch_id)
    with pytest.raises(Conflict):
        yard.discard_batch(batch_id)  # once
    with pytest.raises(NotFound):
        yard.discard_batch("nothing::0")
    with pytest.raises(InvalidInput) as bad:
        yard.discard_batch("ev")
    assert bad.value.field == "batch_id"


def test_a_discarded_batch_no_longer_blocks_its_deletion(yard, clock):
    batch_id = kill(yard, clock, "ev", [{"n": 0}], "down")
    with pytest.raises(Conflict):
        yard.delete_batch(batch_id)  # the 409 that sent people looking for discard
    yard.discard_batch(batch_id)
    yard.delete_batch(batch_id)
    with pytest.raises(NotFound):
        yard.get_batch_items(batch_id)
