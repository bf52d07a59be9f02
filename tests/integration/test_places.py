"""Places kept across calls, on a real store (both backends), with a manual clock: while a
limited handler's flush runs, the next flush for its place is claimed ahead - held by the
worker, queued, not running, not due - and takes the place when the one before ends. A
flush claimed ahead runs once, in that place only; a worker that dies holding one leaves it
to be delivered once its lease ends; a worker that stops gives it back. (Across processes,
with the end written behind the next call: tests/crash/test_places_processes.py.)"""

from __future__ import annotations

import threading

import pytest

from batchyard import RetryPolicy
from batchyard.accumulator.records import FLUSH_TASK
from tests.servers import wait_until

LEASE = 30.0


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


@pytest.fixture
def calls():
    return []


@pytest.fixture
def limited(yard, calls):
    """A handler limited to 1 call at once, with 4 one-item batches due."""
    yard.handler("lim", concurrency=1)(lambda items, ctx: calls.append(ctx.sequence))
    yard.add_items("lim", list(range(4)), max_batch_size=1, on_flush="lim")
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), yard.runtime.now())
    return yard


def claim(yard, worker, limit=8):
    return yard.runtime.tasks.claim(worker.id, limit, LEASE, yard.runtime.now())


def run(yard, task):
    """Run one flush as the worker would, but stop there: what its end hands over is left
    unrun, as by a worker killed right after that end committed."""
    return yard.runtime.kinds.get(FLUSH_TASK).run(task)


def tasks(yard):
    """key -> (state, held by a worker, attempts)."""
    with yard.store.transaction(write=False) as tx:
        rows = tx.all("SELECT key, state, worker_id, attempts FROM batchyard_tasks")
    return {r["key"]: (r["state"], r["worker_id"] is not None, r["attempts"]) for r in rows}


def test_the_next_flush_is_claimed_ahead_and_takes_the_place(limited, calls):
    worker = limited.worker(concurrency=2, lease=LEASE)
    [first] = claim(limited, worker)
    assert claim(limited, worker) == []  # the one place is held
    handed = run(limited, first)
    assert calls == [0] and handed.key == "flush:lim::1"
    # the flush claimed ahead while the first ran holds its place now; the next is claimed
    # ahead for that place: held, its attempt counted, neither running nor due
    assert tasks(limited) == {
        "flush:lim::1": ("running", True, 1),
        "flush:lim::2": ("queued", True, 1),
        "flush:lim::3": ("queued", False, 0),
    }
    assert claim(limited, worker) == []
    [load] = limited.handler_loads()
    assert (load.in_flight, load.waiting) == (1, 1)
    while handed is not None:
        handed = run(limited, handed)
    assert calls == [0, 1, 2, 3]
    assert tasks(limited) == {}


def test_an_enqueue_of_its_key_does_not_bring_a_flush_claimed_ahead_forward(yard, calls):
    """Closing its batch again (a manual flush of a flushing batch queues its flush task
    again) leaves a flush claimed ahead held: brought forward, a worker with a free place
    would run it beside the place it waits for - twice, and over the limit there."""
    yard.handler("lim", concurrency=2)(lambda items, ctx: calls.append(ctx.sequence))
    yard.add_items("lim", list(range(3)), max_batch_size=1, on_flush="lim")
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), yard.runtime.now())
    worker = yard.worker(concurrency=2, lease=LEASE)
    [first] = claim(yard, worker, limit=1)  # one place of two held
    handed = run(yard, first)
    assert tasks(yard)["flush:lim::2"] == ("queued", True, 1)  # ahead, for lim::1's place
    yard.flush("lim::2")
    assert tasks(yard)["flush:lim::2"] == ("queued", True, 1)
    # a place is free, but nothing is due for it (another worker's claim)
    assert yard.runtime.tasks.claim("other", 8, LEASE, yard.runtime.now()) == []
    while handed is not None:
        handed = run(yard, handed)
    assert calls == [0, 1, 2]


def test_a_worker_that_dies_holding_a_flush_claimed_ahead(limited, calls, clock):
    """Killed after the end of its first flush committed: the flush in the place runs
    again, and the one claimed ahead for it is delivered, once their leases end - not
    before (the place stays held meanwhile), and never beside each other."""
    dying = limited.worker(concurrency=2, lease=LEASE)
    [first] = claim(limited, dying)
    handed = run(limited, first)
    assert handed.key == "flush:lim::1" and calls == [0]
    limited.run_worker(wait=False)
    assert calls == [0]  # held by the dead worker's leases
    clock.advance(LEASE + 1)
    limited.run_worker(wait=False)
    assert sorted(calls) == [0, 1, 2, 3]
    assert tasks(limited) == {}
    assert {b.status for b in limited.list_batches()} == {"completed"}


def test_a_stopping_worker_gives_back_the_flush_it_claimed_ahead(limited, calls):
    # (a flush claimed ahead and not given back would hold the stop for its whole timeout)
    worker = limited.worker(concurrency=2, lease=LEASE, poll_interval=0.05, shutdown_timeout=120)
    started, gate = threading.Event(), threading.Event()

    @limited.handler("lim", concurrency=1)
    def lim(items, ctx):
        calls.append(ctx.sequence)
        started.set()
        gate.wait(60)

    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert started.wait(60)
        wait_until(  # the next flush claimed ahead while the call runs
            lambda: ("queued", True, 1) in tasks(limited).values(),
            timeout=60,
            what="a flush claimed ahead",
            interval=0.01,
        )
        worker.stop()
    finally:
        gate.set()
        thread.join(60)
    assert not thread.is_alive(), "the stop waited for a flush claimed ahead"
    assert calls == [0]
    # what was claimed ahead went back, its attempt not counted: due for the next worker
    assert set(tasks(limited).values()) == {("queued", False, 0)}
    limited.run_worker(wait=False)
    assert calls == [0, 1, 2, 3]
