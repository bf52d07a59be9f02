"""Handler limits kept by the claim, on a real store (both backends), with a manual clock:
tasks of a limited handler are claimed only as far as it has room; the rest stay queued,
holding no worker thread, their attempts not counted. (Across processes and machines:
tests/crash/test_handler_limits_processes.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from batchyard import InvalidInput, RetryPolicy
from batchyard.tasks.limits import HandlerLimit


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


def flushes_waiting(yard, count, handler="slow", **limits):
    """`count` batches of one item each, closed for their size, to `handler`."""
    yard.handler(handler, **limits)(lambda items, ctx: None)
    yard.add_items("ev", list(range(count)), max_batch_size=1, on_flush=handler)
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), yard.runtime.now())


def claim(yard, limit=8, lease=30.0):
    return yard.runtime.tasks.claim("w", limit, lease, yard.runtime.now(), look=False)


def attempts(yard):
    with yard.store.transaction() as tx:
        return sorted(r["attempts"] for r in tx.all("SELECT attempts FROM batchyard_tasks"))


def test_concurrency_caps_the_tasks_running_at_once(yard, clock):
    flushes_waiting(yard, 5, concurrency=2)
    first = claim(yard)
    assert len(first) == 2
    assert claim(yard) == []  # full: the others wait, not claimed, their attempts not counted
    assert attempts(yard) == [0, 0, 0, 1, 1]
    [load] = yard.handler_loads()
    assert (load.handler, load.concurrency, load.in_flight, load.waiting) == ("slow", 2, 2, 3)
    with yard.store.transaction(yard.runtime.now()) as tx:
        yard.runtime.tasks.complete(tx, first[0])
    assert len(claim(yard)) == 1  # a place freed: one more
    assert claim(yard) == []


def test_an_expired_lease_frees_its_place(yard, clock):
    flushes_waiting(yard, 3, concurrency=1)
    [held] = claim(yard, lease=5)
    assert claim(yard) == []
    # the next claimable moment: when the lease ends
    assert yard.runtime.tasks.next_due(yard.runtime.now()) == pytest.approx(5)
    clock.advance(6)
    [load] = yard.handler_loads()
    assert (load.in_flight, load.waiting) == (0, 3)  # the expired one is due again
    done = []
    for _ in range(3):  # one at a time, the expired one among them (rescued)
        [task] = claim(yard)
        assert claim(yard) == []
        with yard.store.transaction(yard.runtime.now()) as tx:
            yard.runtime.tasks.complete(tx, task)
        done.append(task.id)
    assert len(set(done)) == 3 and held.id in done


def test_rate_caps_the_starts_in_any_period(yard, clock):
    flushes_waiting(yard, 5, rate=(2, timedelta(seconds=10)))
    started = claim(yard)
    assert len(started) == 2
    with yard.store.transaction(yard.runtime.now()) as tx:
        for task in started:
            yard.runtime.tasks.complete(tx, task)
    assert claim(yard) == []  # nothing runs, yet two started within the period
    assert yard.runtime.tasks.next_due(yard.runtime.now()) == pytest.approx(10)
    clock.advance(5)
    assert claim(yard) == []
    clock.advance(5.01)
    assert len(claim(yard)) == 2


def test_a_worker_delivers_everything_within_the_limits(yard, clock):
    calls = []
    yard.handler("slow", concurrency=1, rate=(3, 1))(lambda items, ctx: calls.append(items))
    yard.add_items("ev", list(range(7)), max_batch_size=1, on_flush="slow")
    yard.handler("free")(lambda items, ctx: calls.append(items))
    yard.add_items("other", ["x"], max_batch_size=1, on_flush="free")
    ran = yard.run_worker(wait=False)
    assert ran == 4  # three within the rate, and the unlimited one
    for _ in range(3):
        clock.advance(1.01)
        yard.run_worker(wait=False)
    assert sorted(map(str, calls)) == sorted(map(str, [[n] for n in range(7)] + [["x"]]))
    assert {b.status for b in yard.list_batches()} == {"completed"}


def test_lifting_a_limit(yard, clock):
    flushes_waiting(yard, 4, concurrency=1)
    assert len(claim(yard)) == 1
    yard.handler("slow")(lambda items, ctx: None)  # registered again, without limits
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), yard.runtime.now())
    assert len(claim(yard)) == 3
    assert yard.handler_loads() == []


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"rate": (10,)}, "rate"),
        ({"rate": [10, 1]}, "rate"),
        ({"rate": (0, 1)}, "rate[0]"),
        ({"rate": (10, 0)}, "rate[1]"),
        ({"rate": (10, float("nan"))}, "rate[1]"),
        ({"rate": (10, "1")}, "rate[1]"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(yard, limits, field):
    with pytest.raises(InvalidInput) as caught:
        yard.handler("h", **limits)
    assert caught.value.field == field


def test_limits_as_registered(yard):
    yard.handler("a", concurrency=3, rate=(5, timedelta(minutes=1)))(print)
    yard.handler("b")(print)
    assert yard.handlers.limits() == {
        "a": HandlerLimit(concurrency=3, rate_count=5, rate_seconds=60.0),
        "b": None,
    }
