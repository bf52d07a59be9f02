"""Many threads adding to one base through one yard (both backends): the adds that wait
for the one in flight go together as one, and each call still gets exact books."""

from __future__ import annotations

import random
import threading

from batchyard import BatchStatus, RetryPolicy
from tests.servers import wait_for_lock_wait
from tests.threads import run_together

SIZE = 7


def test_sixteen_threads_adding_to_one_base_make_exact_batches(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))
    delivered: list[tuple[str, list[int]]] = []

    @yard.handler("collect")
    def collect(items, ctx):
        delivered.append((ctx.batch_id, list(items)))

    added: list[tuple[list[int], object]] = []  # each call's items, and what it returned

    def adder(thread: int) -> None:
        rng = random.Random(thread)
        for call in range(60):
            # mostly single items; now and then a run that fills or spans batches
            count = 1 if rng.random() < 0.7 else rng.randint(2, 3 * SIZE)
            items = [thread * 1_000_000 + call * 100 + i for i in range(count)]
            result = yard.add_items("hot", items, max_batch_size=SIZE, on_flush="collect")
            added.append((items, result))

    run_together(adder, 16)
    yard.flush("hot")
    yard.run_worker(wait=False)

    batches = sorted(delivered, key=lambda call: int(call[0].split("::")[1]))
    assert len({batch_id for batch_id, _ in batches}) == len(batches)  # one flush each
    # every batch closed for its size holds exactly SIZE; only the last, flushed by hand,
    # holds fewer
    assert [len(items) for _, items in batches[:-1]] == [SIZE] * (len(batches) - 1)
    assert 0 < len(batches[-1][1]) <= SIZE
    stream = [item for _, items in batches for item in items]
    every = [item for items, _ in added for item in items]
    assert len(stream) == len(every) and sorted(stream) == sorted(every)  # none lost or doubled
    where = {item: index for index, item in enumerate(stream)}
    batch_of = {item: batch_id for batch_id, items in batches for item in items}
    for items, result in added:
        first = where[items[0]]  # whole and in order
        assert [where[item] for item in items] == list(range(first, first + len(items)))
        # each call's result is what it would have been alone: the batch of its last item,
        # and the batches whose last item it brought
        last = items[-1]
        closes = [batch_of[item] for item in items if (where[item] + 1) % SIZE == 0]
        assert result.item_count == len(items)
        assert result.batch_id == batch_of[last]
        assert result.flushed_batch_ids == tuple(closes)
        assert result.flushed == bool(closes)
        closed_by_it = (where[last] + 1) % SIZE == 0
        assert result.status == (BatchStatus.FLUSHING if closed_by_it else BatchStatus.ACCUMULATING)


# -- several items at the remembered position -------------------------------------------


def _items(yard):
    with yard.store.transaction() as tx:
        rows = tx.all(
            "SELECT b.batch_id, i.position, i.payload FROM batchyard_items i "
            "JOIN batchyard_batches b ON b.batch_no = i.batch_no "
            "ORDER BY b.batch_id, i.position"
        )
    return [(r["batch_id"], r["position"], r["payload"]) for r in rows]


def _add(yard, items):
    return yard.add_items("ev", items, max_batch_size=SIZE, on_flush="collect")


def _two_yards(make_yard, clock):
    yards = [make_yard(clock=clock), make_yard(clock=clock)]  # as two processes
    for yard in yards:
        yard.handler("collect")(lambda items, ctx: None)
    return yards


def test_items_at_a_remembered_position_another_process_took_go_after_its_items(make_yard, clock):
    yard, elsewhere = _two_yards(make_yard, clock)
    _add(yard, [0])  # remembers position 1
    _add(elsewhere, [1, 2])
    assert _add(yard, [3, 4]).batch_id == "ev::0"
    assert _items(yard) == [("ev::0", n, str(n)) for n in range(5)]


def test_items_for_a_remembered_batch_another_process_closed_go_to_the_next(make_yard, clock):
    yard, elsewhere = _two_yards(make_yard, clock)
    _add(yard, [0])
    elsewhere.flush("ev")
    assert _add(yard, [1, 2]).batch_id == "ev::1"
    assert _items(yard) == [("ev::0", 0, "0"), ("ev::1", 0, "1"), ("ev::1", 1, "2")]


def test_items_added_behind_a_lock_holder_go_after_what_it_committed_on_postgres(pg_database):
    # the add remembers position 1; the holder, holding the batch's row lock, puts an item
    # there and commits while the add waits: the add must read afresh once it has the lock

    import psycopg

    from batchyard import Yard

    yard = Yard(pg_database)
    yard.handler("collect")(lambda items, ctx: None)
    _add(yard, ["first"])
    errors: list[BaseException] = []
    with psycopg.connect(pg_database) as holder:
        holder.execute("SELECT 1 FROM batchyard_batches WHERE batch_id = 'ev::0' FOR UPDATE")
        holder.execute(
            "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
            "SELECT batch_no, 1, '\"held\"', 0 FROM batchyard_batches WHERE batch_id = 'ev::0'"
        )

        def waiting_add() -> None:
            try:
                _add(yard, ["w1", "w2"])
            except BaseException as exc:  # reported below, with the thread joined
                errors.append(exc)

        thread = threading.Thread(target=waiting_add)
        thread.start()
        wait_for_lock_wait(pg_database, "the add to wait for the lock")
        holder.commit()
    thread.join(30)
    assert errors == []
    assert _items(yard) == [
        ("ev::0", 0, '"first"'),
        ("ev::0", 1, '"held"'),
        ("ev::0", 2, '"w1"'),
        ("ev::0", 3, '"w2"'),
    ]
    yard.close()
