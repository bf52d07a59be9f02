"""The batch accumulator on a real store (both backends), with a manual clock."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import psycopg
import pytest

from batchyard import (
    BatchStatus,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    ItemFailures,
    LeaseLost,
    NotFound,
    RetryPolicy,
    Yard,
)
from tests.servers import wait_for_lock_wait
from tests.threads import run_together


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


@pytest.fixture
def calls(yard):
    """Every handler call as (batch_id, attempt, items, idempotency_key)."""
    seen = []

    @yard.handler("collect")
    def collect(items, ctx):
        seen.append((ctx.batch_id, ctx.attempt, list(items), ctx.idempotency_key))

    return seen


def add(yard, base, items, **config):
    config = {"max_batch_size": 5, "on_flush": "collect", **config}
    return yard.add_items(base, items, **config)


def pending_items(yard):
    return sum(b.pending_count for b in yard.list_batches(limit=1000))


# -- triggers -----------------------------------------------------------------------------


def test_n_minus_one_adds_flush_nothing_and_the_nth_flushes_exactly_n(yard, calls):
    for i in range(4):
        result = add(yard, "ev", [i])
        assert not result.flushed and result.status == BatchStatus.ACCUMULATING
    assert yard.run_worker(wait=False) == 0
    assert calls == []
    result = add(yard, "ev", [4])
    assert result.flushed and result.batch_id == "ev::0" and result.item_count == 1
    yard.run_worker(wait=False)
    assert [(b, a, items) for b, a, items, _ in calls] == [("ev::0", 1, [0, 1, 2, 3, 4])]
    assert add(yard, "ev", [5]).batch_id == "ev::1"


def test_fewer_than_n_items_flush_once_after_the_interval(yard, calls, clock):
    add(yard, "ev", ["a", "b"], flush_interval=timedelta(seconds=30))
    clock.advance(29)
    yard.run_worker(wait=False)
    assert calls == []
    clock.advance(1)
    yard.run_worker(wait=False)
    clock.advance(300)
    yard.run_worker(wait=False)
    assert [(b, items) for b, _, items, _ in calls] == [("ev::0", ["a", "b"])]
    [record] = yard.get_flush_history("ev")
    assert record.reason == "interval" and record.outcome == "completed"


def test_the_interval_timer_is_set_at_creation_and_not_pushed_back(yard, calls, clock):
    add(yard, "ev", [1], flush_interval=10)
    for n in range(2, 5):
        clock.advance(3)
        add(yard, "ev", [n], flush_interval=10)
    clock.advance(1)  # 10 s after the batch was created, 1 s after the last add
    yard.run_worker(wait=False)
    assert [items for _, _, items, _ in calls] == [[1, 2, 3, 4]]


def test_the_nth_add_racing_the_interval_gives_one_flush_and_no_empty_one(yard, calls, clock):
    add(yard, "ev", [0, 1, 2, 3], flush_interval=10)
    clock.advance(10)  # the timer is due ...
    add(yard, "ev", [4], flush_interval=10)  # ... and the size trigger fires as well
    yard.run_worker(wait=False)
    clock.advance(100)
    yard.run_worker(wait=False)
    assert [(b, items) for b, _, items, _ in calls] == [("ev::0", [0, 1, 2, 3, 4])]
    assert [r.item_count for r in yard.get_flush_history("ev")] == [5]


def test_the_timer_closing_first_sends_later_adds_to_the_next_batch(yard, calls, clock):
    add(yard, "ev", [0, 1], flush_interval=10)
    clock.advance(10)
    [task] = yard.runtime.tasks.claim("other-worker", 1, lease=30, now=clock.time())
    yard._accumulator.flusher.run_flush(task)  # the interval flush closes ev::0
    result = add(yard, "ev", [2], flush_interval=10)
    assert result.batch_id == "ev::1"
    assert [items for _, _, items, _ in calls] == [[0, 1]]


def _add_behind_a_lock_holder(pg_database, adder, holder_sql):
    """`adder` adds one item while another transaction, having run `holder_sql`, holds the
    batch ev::0's row lock; returns the add's result once the holder has committed."""
    results, errors = [], []
    with psycopg.connect(pg_database) as holder:
        holder.execute("SELECT 1 FROM batchyard_batches WHERE batch_id = 'ev::0' FOR UPDATE")
        holder.execute(holder_sql)

        def waiting_add():
            try:
                results.append(add(adder, "ev", ["waited"]))
            except Exception as exc:  # reported below, with the thread joined
                errors.append(exc)

        thread = threading.Thread(target=waiting_add)
        thread.start()
        wait_for_lock_wait(pg_database, "the add to wait for the lock")
        holder.commit()
    thread.join(30)
    assert errors == []
    return results[0]


def _items(yard):
    with yard.store.transaction() as tx:
        rows = tx.all(
            "SELECT b.batch_id, i.position, i.payload FROM batchyard_items i "
            "JOIN batchyard_batches b ON b.batch_no = i.batch_no "
            "ORDER BY b.batch_id, i.position"
        )
    return [(r["batch_id"], r["position"], r["payload"]) for r in rows]


# remembered: the adder added the batch's last item itself, so it goes to the position it
# remembers; counted: a yard that never added here (another process) counts the position
ADDERS = pytest.mark.parametrize("adder", ["remembered", "counted"])


def _yards(pg_database, adder):
    yard = Yard(pg_database)
    other = Yard(pg_database) if adder == "counted" else yard
    for y in {yard, other}:
        y.handler("collect")(lambda items, ctx: None)
    return yard, other


@ADDERS
def test_an_add_that_waited_for_the_open_batch_takes_the_next_position_on_postgres(
    pg_database, adder
):
    # A single-item add reads (or remembers) its position before it waits for the batch's
    # row lock; it must neither collide with what the lock holder committed nor lose its
    # item. (On SQLite a writer takes the write lock before reading anything.)
    yard, other = _yards(pg_database, adder)
    add(yard, "ev", ["first"])
    result = _add_behind_a_lock_holder(
        pg_database,
        other,
        (
            "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
            "SELECT batch_no, 1, '\"held\"', 0 FROM batchyard_batches WHERE batch_id = 'ev::0'"
        ),
    )
    assert result.batch_id == "ev::0"
    assert _items(yard) == [
        ("ev::0", 0, '"first"'),
        ("ev::0", 1, '"held"'),
        ("ev::0", 2, '"waited"'),
    ]
    yard.close(), other.close()


@ADDERS
def test_an_add_that_waited_for_a_closing_batch_goes_to_the_next_on_postgres(pg_database, adder):
    # The lock holder closes the batch: an add that waited for it must see the close, not
    # the open batch of its snapshot, or its item would join a flush already under way.
    yard, other = _yards(pg_database, adder)
    add(yard, "ev", ["first"])
    result = _add_behind_a_lock_holder(
        pg_database,
        other,
        ("UPDATE batchyard_batches SET status = 'flushing' WHERE batch_id = 'ev::0'"),
    )
    assert result.batch_id == "ev::1"
    assert _items(yard) == [("ev::0", 0, '"first"'), ("ev::1", 0, '"waited"')]
    yard.close(), other.close()


@pytest.fixture
def elsewhere(make_yard, clock):
    """A second yard on the same store, as another process would have: its own connections,
    nothing remembered in common with `yard`."""
    other = make_yard(clock=clock)
    other.handler("collect")(lambda items, ctx: None)
    return other


def test_a_remembered_position_that_another_process_took_is_counted_again(yard, calls, elsewhere):
    add(yard, "ev", [0])
    add(yard, "ev", [1])  # remembers position 2
    add(elsewhere, "ev", [2, 3])
    assert add(yard, "ev", [4]).batch_id == "ev::0"  # 2 is taken: counted, it takes 4
    assert _items(yard) == [("ev::0", n, str(n)) for n in range(5)]
    yard.run_worker(wait=False)
    assert [items for _, _, items, _ in calls] == [[0, 1, 2, 3, 4]]


def test_a_remembered_batch_that_another_process_closed_takes_no_more_items(yard, calls, elsewhere):
    add(yard, "ev", [0])
    add(yard, "ev", [1])  # remembers ev::0, position 2
    elsewhere.flush("ev")
    assert add(yard, "ev", [2]).batch_id == "ev::1"
    yard.run_worker(wait=False)
    assert [(b, items) for b, _, items, _ in calls] == [("ev::0", [0, 1])]
    assert _items(yard)[-1] == ("ev::1", 0, "2")


def test_threads_adding_to_one_base_through_one_yard_keep_exact_books(yard, calls):
    # the threads share what the yard remembers of the open batch, and race on it
    def adder(thread):
        for n in range(150):
            add(yard, "ev", [thread * 1000 + n], max_batch_size=7)

    run_together(adder, 6)
    yard.flush("ev")
    yard.run_worker(wait=False)
    delivered = [item for _, _, items, _ in calls for item in items]
    assert sorted(delivered) == sorted(t * 1000 + n for t in range(6) for n in range(150))
    assert max(len(items) for _, _, items, _ in calls) == 7
    assert pending_items(yard) == 0


def test_concurrent_adds_spanning_batches_stay_whole_and_in_order(yard, calls, make_yard, clock):
    """Processes' worth of yards (a connection each) add runs of 1..20 items to two bases
    at once, each add spanning up to four batches of 7: every item lands once, batches
    closed for their size hold 7, and each add's items stay together and in order. On
    PostgreSQL the adds' batch numbers interleave, so some take the batch-by-batch path."""
    import random

    added: dict[str, list[list[int]]] = {"a": [], "b": []}

    def adder(thread):
        other = make_yard(clock=clock)
        other.handler("collect")(lambda items, ctx: None)
        rng = random.Random(thread)
        for call in range(40):
            base = "ab"[(thread + call) % 2]
            items = [thread * 100_000 + call * 100 + i for i in range(rng.randint(1, 20))]
            add(other, base, items, max_batch_size=7)
            added[base].append(items)

    run_together(adder, 4)
    yard.flush("a")
    yard.flush("b")
    yard.run_worker(wait=False)
    for base in "ab":
        batches = sorted(
            (int(b.split("::")[1]), items) for b, _, items, _ in calls if b.startswith(f"{base}::")
        )
        assert [len(items) for _, items in batches[:-1]] == [7] * (len(batches) - 1)
        stream = [item for _, items in batches for item in items]
        assert sorted(stream) == sorted(item for run in added[base] for item in run)
        where = {item: index for index, item in enumerate(stream)}
        for run in added[base]:  # whole and in order
            assert [where[item] for item in run] == list(
                range(where[run[0]], where[run[0]] + len(run))
            )


def test_a_large_add_is_split_and_no_call_exceeds_the_limit(yard, calls):
    add(yard, "ev", [0, 1])
    result = add(yard, "ev", list(range(2, 14)))
    assert result.item_count == 12
    assert result.flushed_batch_ids == ("ev::0", "ev::1")
    assert result.batch_id == "ev::2" and result.status == BatchStatus.ACCUMULATING
    yard.run_worker(wait=False)
    assert sorted(items for _, _, items, _ in calls) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    [open_batch] = yard.get_batch_status("ev")
    assert open_batch.item_count == 4 and open_batch.status == BatchStatus.ACCUMULATING


def _fill_many_batches_in_one_add(yard, calls, clock):
    """An add that fills the open batch, four new ones, and leaves a sixth open: its items
    land in order, each full batch is flushed once for its size, the open one by its timer."""
    add(yard, "ev", [0, 1, 2], flush_interval=30)
    result = add(yard, "ev", list(range(3, 26)), flush_interval=30)
    assert result.item_count == 23
    assert result.flushed_batch_ids == tuple(f"ev::{n}" for n in range(5))
    assert result.batch_id == "ev::5" and result.status == BatchStatus.ACCUMULATING
    yard.run_worker(wait=False)
    assert sorted((b, items) for b, _, items, _ in calls) == [
        (f"ev::{n}", list(range(5 * n, 5 * n + 5))) for n in range(5)
    ]
    assert len({key for _, _, _, key in calls}) == 5  # an idempotency key each
    assert [h.reason for h in yard.get_flush_history("ev::3")] == ["size"]
    [open_batch] = yard.get_batch_status("ev")
    assert open_batch.batch_id == "ev::5" and open_batch.item_count == 1
    clock.advance(31)
    yard.run_worker(wait=False)  # the sixth batch's timer, set when the add made it
    assert calls[-1][:3] == ("ev::5", 1, [25]) and len(calls) == 6
    assert pending_items(yard) == 0


def test_one_add_fills_many_batches_in_order(yard, calls, clock):
    _fill_many_batches_in_one_add(yard, calls, clock)


def test_batches_closed_by_one_add_keep_their_own_max_attempts(yard, calls):
    add(yard, "ev", [0, 1, 2], max_attempts=2)  # ev::0 is made with 2 attempts
    add(yard, "ev", list(range(3, 14)), max_attempts=4)  # fills it and ev::1, opens ev::2
    with yard.store.transaction(write=False) as tx:
        tasks = {
            row["key"]: row["max_attempts"]
            for row in tx.all(
                "SELECT key, max_attempts FROM batchyard_tasks WHERE kind = :kind",
                {"kind": "accumulator.flush"},
            )
        }
    assert tasks == {"flush:ev::0": 2, "flush:ev::1": 4}


def test_batch_numbers_with_gaps_still_place_every_item(pg_database, clock):
    """Batches made by one statement have consecutive numbers unless another transaction
    took one in between (PostgreSQL only: SQLite has one writer); then each item finds its
    batch by its sequence. Here the gaps are forced."""
    yard = Yard(pg_database, clock=clock)
    try:
        yard.store.execute(
            "ALTER TABLE batchyard_batches ALTER COLUMN batch_no SET INCREMENT BY 7", {}
        )
        calls: list = []
        yard.handler("collect")(
            lambda items, ctx: calls.append(
                (ctx.batch_id, ctx.attempt, list(items), ctx.idempotency_key)
            )
        )
        _fill_many_batches_in_one_add(yard, calls, clock)
    finally:
        yard.close()


def test_manual_flush_by_base_id_and_by_batch_id(yard, calls):
    add(yard, "ev", [1, 2])
    result = yard.flush("ev")
    assert result.flushed and result.batch_id == "ev::0" and result.item_count == 2
    assert add(yard, "ev", [3]).batch_id == "ev::1"  # items added meanwhile wait
    yard.run_worker(wait=False)
    assert yard.flush("ev::1").flushed
    yard.run_worker(wait=False)
    assert [items for _, _, items, _ in calls] == [[1, 2], [3]]
    assert yard.get_flush_history("ev")[0].reason == "manual"
    nothing = yard.flush("ev")
    assert not nothing.flushed and nothing.batch_id is None
    with pytest.raises(NotFound):
        yard.flush("nope::3")


def test_trigger_interval_flushes_for_cron_driven_use(yard, calls, clock):
    add(yard, "a", [1], flush_interval=5)
    add(yard, "b", [2], flush_interval=50)
    add(yard, "c", [3])
    clock.advance(6)
    assert yard.trigger_interval_flushes() == ["a::0"]
    yard.run_worker(wait=False)
    assert [b for b, _, _, _ in calls] == ["a::0"]


def test_async_handlers_are_awaited(yard):
    got = []

    @yard.handler("async")
    async def handle(items, ctx):
        await asyncio.sleep(0)
        got.append((ctx.batch_id, items))

    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="async")
    yard.run_worker(wait=False)
    assert got == [("ev::0", [1, 2])]


# -- failures -------------------------------------------------------------------------------


def test_a_failing_handler_keeps_items_backs_off_dead_letters_and_redrives(yard, clock):
    calls = []
    failing = {"on": True}

    @yard.handler("flaky")
    def flaky(items, ctx):
        calls.append((ctx.attempt, ctx.idempotency_key, list(items)))
        if failing["on"]:
            raise ConnectionError("sink is down")

    yard.add_items("ev", [1, 2, 3], max_batch_size=3, on_flush="flaky")
    yard.run_worker(wait=False)
    assert len(calls) == 1
    [batch] = yard.get_batch_status("ev")
    assert batch.status == BatchStatus.FLUSHING and batch.pending_count == 3
    assert batch.last_error == "ConnectionError: sink is down"
    clock.advance(0.99)  # backoff is 1 s, then 2 s
    yard.run_worker(wait=False)
    assert len(calls) == 1
    clock.advance(0.01)
    yard.run_worker(wait=False)
    clock.advance(1.99)
    yard.run_worker(wait=False)
    assert len(calls) == 2
    clock.advance(0.01)
    yard.run_worker(wait=False)
    assert [a for a, _, _ in calls] == [1, 2, 3]
    assert len({key for _, key, _ in calls}) == 1  # one flush, one idempotency key
    [dead] = yard.get_batch_status("ev")
    assert dead.status == BatchStatus.DEAD and dead.pending_count == 3
    assert [b.batch_id for b in yard.list_dead_batches()] == ["ev::0"]
    history = yard.get_flush_history("ev")
    assert [(r.attempt, r.outcome, r.error) for r in history] == [
        (n, "failed", "ConnectionError: sink is down") for n in (3, 2, 1)
    ]
    assert all(r.duration_seconds >= 0 for r in history)
    clock.advance(3600)
    assert yard.run_worker(wait=False) == 0  # dead means no more tries
    with pytest.raises(Conflict):
        yard.delete_batch("ev::0")  # items are still pending

    failing["on"] = False
    assert yard.redrive_batch("ev::0").flushed
    yard.run_worker(wait=False)
    assert calls[-1] == (4, calls[0][1], [1, 2, 3])
    [record, *_] = yard.get_flush_history("ev")
    assert (record.attempt, record.outcome, record.reason) == (4, "completed", "redrive")
    assert yard.get_batch_status("ev") == []
    assert pending_items(yard) == 0
    with pytest.raises(Conflict):
        yard.redrive_batch("ev::0")  # completed, not dead


def test_per_item_failures_retry_only_the_failed_items(yard, clock):
    calls = []

    @yard.handler("picky")
    def picky(items, ctx):
        calls.append(list(items))
        failures = {i: f"odd: {v}" for i, v in enumerate(items) if v % 2 and ctx.attempt == 1}
        if failures:
            raise ItemFailures(failures)

    yard.add_items("ev", [1, 2, 3, 4], max_batch_size=4, on_flush="picky")
    yard.run_worker(wait=False)
    [batch] = yard.get_batch_status("ev")
    assert batch.pending_count == 2 and batch.status == BatchStatus.FLUSHING
    clock.advance(1)
    yard.run_worker(wait=False)
    assert calls == [[1, 2, 3, 4], [1, 3]]
    assert [(r.outcome, r.item_count, r.failed_count) for r in yard.get_flush_history("ev")] == [
        ("completed", 2, 0),
        ("partial", 4, 2),
    ]
    assert pending_items(yard) == 0


def test_an_item_that_succeeds_on_a_later_attempt_is_no_longer_pending(yard, clock):
    # each attempt's failures replace the attempt's before: 1 and 3 fail first, then only 3
    calls = []

    @yard.handler("picky")
    def picky(items, ctx):
        calls.append(list(items))
        failing = {1: {1, 3}, 2: {3}}.get(ctx.attempt, set())
        failures = {i: f"not yet: {v}" for i, v in enumerate(items) if v in failing}
        if failures:
            raise ItemFailures(failures)

    yard.add_items("ev", [1, 2, 3, 4], max_batch_size=4, on_flush="picky")
    for _ in range(3):
        yard.run_worker(wait=False)
        clock.advance(10)
    assert calls == [[1, 2, 3, 4], [1, 3], [3]]
    assert [(r.outcome, r.item_count, r.failed_count) for r in yard.get_flush_history("ev")] == [
        ("completed", 1, 0),
        ("partial", 2, 1),
        ("partial", 4, 2),
    ]
    assert pending_items(yard) == 0


def test_items_failures_out_of_range_fail_the_whole_flush(yard):
    @yard.handler("wrong")
    def wrong(items, ctx):
        raise ItemFailures({7: "no such item"})

    yard.add_items("ev", [1], max_batch_size=1, on_flush="wrong")
    yard.run_worker(wait=False)
    [record] = yard.get_flush_history("ev")
    assert record.outcome == "failed" and "outside the batch" in record.error


def test_a_flush_whose_runner_fails_goes_dead_with_its_batch_never_stranded(yard, calls, clock):
    """The runner itself fails (an item it cannot decode), not the handler: the worker's
    generic failure path retries and dead-letters the task, and the batch goes dead with it,
    the error in its history, listed, and can be redriven."""
    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="collect", max_attempts=2)
    with yard.store.transaction() as tx:  # what a lone surrogate used to become
        tx.execute(
            "UPDATE batchyard_items SET payload = :bad WHERE position = 1", {"bad": '"\\ud800"'}
        )
    yard.run_worker(wait=False)
    clock.advance(1)
    yard.run_worker(wait=False)
    [batch] = yard.get_batch_status("ev")
    assert batch.status == BatchStatus.DEAD and "JSONDecodeError" in batch.last_error
    assert [b.batch_id for b in yard.list_dead_batches()] == ["ev::0"]
    [record] = yard.get_flush_history("ev")
    assert record.outcome == "failed" and record.error == batch.last_error
    assert record.item_count == 2 and calls == []
    with yard.store.transaction() as tx:  # mended by hand: a redrive delivers it
        tx.execute("UPDATE batchyard_items SET payload = '2' WHERE position = 1")
    yard.redrive_batch("ev::0")
    yard.run_worker(wait=False)
    assert [(batch_id, items) for batch_id, _, items, _ in calls] == [("ev::0", [1, 2])]


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_id", "items", "config", "error", "message"),
    [
        ("ev", [1, {2}], {}, InvalidInput, "items[1]: set is not a JSON value"),
        ("ev", [1, float("nan")], {}, InvalidInput, "items[1]"),
        ("ev", "abc", {}, InvalidInput, "items must be a list"),
        ("", [1], {}, InvalidInput, "batch_id must be a non-empty string"),
        ("::3", [1], {}, InvalidInput, "empty base id"),
        ("ev", [1], {"max_batch_size": 0}, InvalidInput, "max_batch_size must be a positive"),
        ("ev", [1], {"max_batch_size": -4}, InvalidInput, "max_batch_size"),
        ("ev", [1], {"max_batch_size": True}, InvalidInput, "max_batch_size"),
        # equal to the 5 accepted just before (and hashed alike): still refused
        ("ev", [1], {"max_batch_size": 5.0}, InvalidInput, "max_batch_size"),
        ("ev", [1], {"flush_interval": 0}, InvalidInput, "flush_interval must be positive"),
        ("ev", [1], {"on_flush": "nobody"}, HandlerNotFound, "no handler is registered"),
        ("ev", [1], {"max_attempts": 0}, InvalidInput, "max_attempts"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_stored(
    yard, calls, batch_id, items, config, error, message
):
    add(yard, "ev", [0])  # accepted before: must survive
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        add(yard, batch_id, items, **config)
    with yard.store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_items")["n"] == 1
        assert tx.one("SELECT count(*) AS n FROM batchyard_batches")["n"] == 1


def test_an_empty_add_stores_nothing(yard, calls):
    result = add(yard, "ev", [])
    assert result.item_count == 0 and not result.flushed
    assert yard.get_batch_status("ev") == []


# -- status, history, delete, prune -----------------------------------------------------------


def test_status_reports_counts_ages_and_config(yard, calls, clock):
    add(yard, "ev", [1, 2], flush_interval=60, max_batch_size=10)
    clock.advance(7)
    [info] = yard.get_batch_status("ev")
    assert (info.batch_id, info.item_count, info.pending_count) == ("ev::0", 2, 2)
    assert (info.max_batch_size, info.flush_interval, info.handler) == (10, 60.0, "collect")
    assert info.age_seconds == pytest.approx(7)


def test_delete_is_refused_while_flushing_or_pending_and_allowed_when_completed(yard, calls):
    add(yard, "ev", [1])
    with pytest.raises(Conflict, match="pending items"):
        yard.delete_batch("ev::0")
    yard.flush("ev")
    with pytest.raises(Conflict, match="flushing"):
        yard.delete_batch("ev::0")
    yard.run_worker(wait=False)
    yard.delete_batch("ev::0")
    with pytest.raises(NotFound):
        yard.delete_batch("ev::0")
    with pytest.raises(InvalidInput):
        yard.delete_batch("ev")


def test_completed_batches_and_history_are_pruned_after_the_retention(make_yard, clock):
    yard = make_yard(clock=clock, retention=3600)

    @yard.handler("noop")
    def noop(items, ctx):
        pass

    for n in range(6):
        yard.add_items("ev", [n], max_batch_size=2, on_flush="noop")
    yard.run_worker(wait=False)
    clock.advance(3601)
    yard.add_items("ev", [99], max_batch_size=2, on_flush="noop")  # stays
    assert yard._accumulator.pruner.prune(yard.retention) == 3
    with yard.store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_items")["n"] == 1
        assert tx.one("SELECT count(*) AS n FROM batchyard_flushes")["n"] == 0
    assert [b.batch_id for b in yard.get_batch_status("ev")] == ["ev::3"]


def test_a_stale_flush_outcome_is_refused_and_writes_none_of_its_books(yard, clock):
    # The outcome is written in one pipelined round trip: the fenced write of the task must
    # fail that transaction whole, the item failures and history written with it included.
    calls = []

    @yard.handler("picky")
    def picky(items, ctx):
        calls.append((ctx.attempt, list(items)))
        if ctx.attempt == 1:
            raise ItemFailures({0: "no"})

    yard.add_items("ev", [1, 2, 3], max_batch_size=3, on_flush="picky")
    [stale] = yard.runtime.tasks.claim("lost-worker", 1, lease=5, now=clock.time())
    clock.advance(6)  # its lease runs out, and another worker takes the flush over
    [fresh] = yard.runtime.tasks.claim("other-worker", 1, lease=30, now=clock.time())
    with pytest.raises(LeaseLost):
        yard._accumulator.flusher.run_flush(stale)
    assert calls == [(1, [1, 2, 3])]
    assert yard.get_flush_history("ev") == []
    [batch] = yard.get_batch_status("ev")
    assert (batch.status, batch.pending_count, batch.last_error) == (BatchStatus.FLUSHING, 3, None)
    yard._accumulator.flusher.run_flush(fresh)
    assert calls[-1] == (2, [1, 2, 3])
    assert [(r.attempt, r.outcome) for r in yard.get_flush_history("ev")] == [(2, "completed")]
    assert pending_items(yard) == 0
