"""Hand-offs on a real store (both backends): the end of a flush claims the flush it makes
runnable - the next batch of an ordered base, or a place under a limited handler - and the
worker runs it on the same slot; ordered successors wait parked until their predecessor
ends. A worker that dies between the two leaves the handed flush to be rescued after its
lease; a hand-off never takes more than the place it frees."""

from __future__ import annotations

import threading
import time

import pytest

from batchyard import RetryPolicy
from batchyard.accumulator.records import FLUSH_TASK
from batchyard.handlers import HandlerLimit

LEASE = 30.0


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


@pytest.fixture
def one_attempt(make_yard, clock):
    """A yard whose batches die at their first failure."""
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=1, jitter=0))


def claim(yard, worker, limit=1):
    return yard.runtime.tasks.claim(worker.id, limit, LEASE, yard.runtime.now())


def run(yard, task):
    """Run one flush task as the worker would, but stop there: the task it hands over (if
    any) is left unrun, as by a worker killed right after the hand-off committed."""
    kind = yard.runtime.kinds.get(FLUSH_TASK)
    return kind.run(task)


def test_one_worker_runs_an_ordered_base_in_one_claim(yard):
    arrived = []
    yard.handler("sink")(lambda items, ctx: arrived.append(ctx.sequence))
    yard.add_items("ev", list(range(20)), max_batch_size=2, on_flush="sink", ordered=True)
    # the successors are parked: nothing but the first batch's flush is due
    assert yard.runtime.tasks.next_due(yard.runtime.now()) == 0
    worker = yard.worker(concurrency=1, lease=LEASE)
    [first] = claim(yard, worker, limit=10)
    assert first.key == "flush:ev::0"
    task, handed = first, []
    while task is not None:
        task = run(yard, task)
        handed.append(task)
    assert arrived == list(range(10))
    assert [t.key for t in handed[:-1]] == [f"flush:ev::{n}" for n in range(1, 10)]
    assert yard.get_batch_status("ev") == []


def test_a_flush_handed_to_a_worker_that_died_runs_once_its_lease_ends(yard, clock):
    arrived = []
    yard.handler("sink")(lambda items, ctx: arrived.append((ctx.sequence, ctx.attempt)))
    yard.add_items("ev", list(range(6)), max_batch_size=2, on_flush="sink", ordered=True)
    dying = yard.worker(concurrency=1, lease=LEASE)
    [first] = claim(yard, dying)
    handed = run(yard, first)
    assert handed is not None and handed.key == "flush:ev::1"
    assert arrived == [(0, 1)]
    # held by the dead worker's lease: no one else runs it, nor what waits for it
    yard.run_worker(wait=False)
    assert arrived == [(0, 1)]
    clock.advance(LEASE + 1)
    yard.run_worker(wait=False)
    # started by the hand-off, so this is its second attempt
    assert arrived == [(0, 1), (1, 2), (2, 1)]
    # the dead worker's late outcome is refused: its token is stale
    with pytest.raises(Exception, match="no longer held"):
        run(yard, handed)


def test_discarding_a_dead_predecessor_releases_its_parked_successor_at_once(one_attempt):
    yard = one_attempt
    arrived = []

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence == 1:
            raise ConnectionError("batch 1 never goes through")
        arrived.append(ctx.sequence)

    yard.add_items("ev", list(range(8)), max_batch_size=2, on_flush="sink", ordered=True)
    yard.run_worker(wait=False)
    assert arrived == [0]
    assert yard.runtime.tasks.next_due(yard.runtime.now()) is None
    yard.discard_batch("ev::1")
    yard.run_worker(wait=False)  # the clock has not moved
    assert arrived == [0, 2, 3]


def test_redriving_a_dead_predecessor_runs_it_then_its_successors(one_attempt):
    yard = one_attempt
    arrived = []
    down = {"on": True}

    @yard.handler("sink")
    def sink(items, ctx):
        if ctx.sequence == 0 and down["on"]:
            raise ConnectionError("down")
        arrived.append(ctx.sequence)

    yard.add_items("ev", list(range(6)), max_batch_size=2, on_flush="sink", ordered=True)
    yard.run_worker(wait=False)
    assert arrived == []
    down["on"] = False
    yard.redrive_batch("ev::0")
    yard.run_worker(wait=False)  # the clock has not moved
    assert arrived == [0, 1, 2]


@pytest.fixture
def limited(yard):
    """A handler limited to 2 calls at once, with 6 one-item batches due."""
    yard.handler("lim", concurrency=2)(lambda items, ctx: None)
    yard.add_items("lim", list(range(6)), max_batch_size=1, on_flush="lim")
    return yard


def publish(yard, limit):
    yard.runtime.tasks.publish_limits({"lim": limit}, yard.runtime.now())


def test_a_limited_flush_hands_its_place_to_the_oldest_due_one(limited):
    worker = limited.worker(concurrency=2, lease=LEASE)
    publish(limited, HandlerLimit(concurrency=2))
    a, b = claim(limited, worker, limit=6)  # the limit lets two through
    handed = run(limited, a)
    # the oldest due one, claimed ahead while `a` ran, takes its place; the next is claimed
    # ahead for that place in turn (held by the worker, not running, not due)
    assert handed is not None and handed.key == "flush:lim::2"
    assert held(limited) == {"flush:lim::1": "running", "flush:lim::2": "running"}
    assert ahead(limited) == ["flush:lim::3"]
    assert claim(limited, worker, limit=6) == []  # still two in flight
    assert run(limited, b).key == "flush:lim::4"
    assert ahead(limited) == ["flush:lim::3", "flush:lim::5"]


def held(yard):
    """The tasks running, by key."""
    with yard.store.transaction(write=False) as tx:
        rows = tx.all("SELECT key, state FROM batchyard_tasks WHERE state = 'running'")
    return {row["key"]: row["state"] for row in rows}


def ahead(yard):
    """The keys of the tasks claimed ahead for a place: queued, held by a worker."""
    with yard.store.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT key FROM batchyard_tasks WHERE state = 'queued' AND worker_id IS NOT NULL "
            "ORDER BY key"
        )
    return [row["key"] for row in rows]


def test_a_limited_hand_off_never_takes_more_than_the_place_it_frees(limited, clock):
    worker = limited.worker(concurrency=2, lease=LEASE)
    publish(limited, HandlerLimit(concurrency=2))
    a, b = claim(limited, worker, limit=6)
    publish(limited, HandlerLimit(concurrency=1))  # lowered while two run
    assert run(limited, a) is None  # one still runs: no place for another
    c = run(limited, b)
    assert c.key == "flush:lim::2"  # the last one's place is free
    # an ending flush whose lease ran out frees no place: others may hold it already
    clock.advance(LEASE + 1)
    assert run(limited, c) is None


def test_a_rate_limited_handler_is_left_to_the_limited_claim(limited):
    worker = limited.worker(concurrency=2, lease=LEASE)
    publish(limited, HandlerLimit(concurrency=2, rate_count=100, rate_seconds=1))
    a, _ = claim(limited, worker, limit=6)
    assert run(limited, a) is None
    assert [t.key for t in claim(limited, worker, limit=6)] == ["flush:lim::2"]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_successor_queued_while_its_predecessor_completes_is_not_stranded(yard):
    """The enqueue that parks a successor waits for a completion of its predecessor that is
    under way, then sees it gone (PostgreSQL only: SQLite has one writer, so no enqueue runs
    beside a completion)."""
    tasks, now = yard.runtime.tasks, yard.runtime.now()
    with yard.store.transaction(now) as tx:
        tasks.enqueue_many(tx, "probe", [("a", {}, None)])
    worker = yard.worker(concurrency=1)
    [a] = tasks.claim(worker.id, 1, LEASE, now)

    def enqueue_successor():
        with yard.store.transaction(now) as tx:
            tasks.enqueue_many(tx, "probe", [("b", {}, "a")])

    with yard.store.transaction(now) as tx:
        tasks.complete(tx, a, release=True)
        thread = threading.Thread(target=enqueue_successor)
        thread.start()
        # let the enqueue reach the predecessor's row lock before this commits
        deadline = time.monotonic() + 10
        while not _waits_for_a_lock(yard) and time.monotonic() < deadline:
            time.sleep(0.01)
    thread.join()
    assert [t.key for t in tasks.claim(worker.id, 5, LEASE, now)] == ["b"]


def _waits_for_a_lock(yard):
    with yard.store.transaction(write=False) as tx:
        return (
            tx.one(
                "SELECT 1 AS x FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            is not None
        )


def test_a_stopping_worker_hands_nothing_over(yard):
    """The end of a flush while the worker stops claims no next one: it waits, untried, for
    the next worker (its attempt not counted)."""
    arrived = []
    worker = yard.worker(concurrency=2, lease=LEASE)

    @yard.handler("sink")
    def sink(items, ctx):
        arrived.append((ctx.sequence, ctx.attempt))
        if ctx.sequence == 1:
            worker.stop()

    yard.add_items("ev", list(range(8)), max_batch_size=2, on_flush="sink", ordered=True)
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join()
    assert arrived == [(0, 1), (1, 1)]
    yard.run_worker(wait=False)
    assert arrived == [(0, 1), (1, 1), (2, 1), (3, 1)]
