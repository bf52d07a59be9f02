"""Batchers on both stores: items routed to their key's batches, per-key order kept, and
at most `max_open_keys` keys accumulating at once under threads adding together."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from batchyard import InvalidInput, NotFound, RetryPolicy
from tests.threads import run_together

KEYS = 20
MAX_OPEN = 5


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))
    yard.delivered = []

    @yard.handler("sink")
    def sink(items, ctx):
        yard.delivered.append((ctx.batch_id, list(items)))

    return yard


def drain(yard, name):
    for key in yard.get_batcher_status(name).keys:
        yard.flush(f"{name}:{key}")
    yard.run_worker(wait=False)


def by_key(delivered):
    """Each key's items in the order its batches were numbered."""
    batches = defaultdict(list)
    for batch_id, items in delivered:
        base, sequence = batch_id.split("::")
        batches[base].append((int(sequence), items))
    return {
        base: [item for _, items in sorted(numbered) for item in items]
        for base, numbered in batches.items()
    }


def test_twenty_keys_from_four_threads_stay_in_order_with_five_open_at_most(yard):
    yard.register_batcher(
        "events", key="k", max_batch_size=7, on_flush="sink", max_open_keys=MAX_OPEN
    )
    most_open = []

    def adder(thread):
        rng = random.Random(thread)
        for call in range(60):
            items = [
                {"k": f"k{rng.randrange(KEYS)}", "t": thread, "n": call * 10 + i}
                for i in range(rng.randint(1, 6))
            ]
            yard.add("events", items)
            most_open.append(yard.get_batcher_status("events").open_keys)

    run_together(adder, 4)
    assert max(most_open) <= MAX_OPEN and max(most_open) == MAX_OPEN  # bounded, and reached
    drain(yard, "events")

    streams = by_key(yard.delivered)
    assert len(streams) == KEYS
    seen = set()
    for base, items in streams.items():
        assert {item["k"] for item in items} == {base.removeprefix("events:")}
        for thread in range(4):  # each thread's items of a key, in the order it added them
            numbers = [item["n"] for item in items if item["t"] == thread]
            assert numbers == sorted(numbers)
        seen.update((item["t"], item["n"]) for item in items)
    assert len(seen) == sum(len(items) for _, items in yard.delivered)  # none twice
    assert all(len(items) <= 7 for _, items in yard.delivered)
    early = [b for b in yard.list_batches(limit=1000) if b.flush_reason == "max_open_keys"]
    assert early  # keys beyond the fifth made room by flushing the oldest early


def test_a_key_function_and_one_calls_order_within_each_key(yard):
    yard.register_batcher(
        "orders", key=lambda item: item["shop"].lower(), max_batch_size=100, on_flush="sink"
    )
    results = yard.add("orders", [{"shop": s, "n": n} for n, s in enumerate("AbaBcA")])
    assert [r.batch_id for r in results] == ["orders:a::0", "orders:b::0", "orders:c::0"]
    drain(yard, "orders")
    streams = by_key(yard.delivered)
    assert [item["n"] for item in streams["orders:a"]] == [0, 2, 5]
    assert [item["n"] for item in streams["orders:b"]] == [1, 3]
    status = yard.get_batcher_status("orders")
    assert status.open_keys == 0 and status.max_open_keys is None


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([{"k": "a"}, {"x": 1}], "items[1] has no field 'k'"),
        ([{"k": "a"}, {"k": 1.5}], "items[1]: a key must be text or an integer"),
        ([{"k": "a"}, {"k": "x::1"}], "items[1]: key 'x::1' must be"),
        ([{"k": "a"}, {"k": "b", "v": float("nan")}], "items[1]"),
    ],
)
def test_a_bad_item_is_named_and_nothing_of_its_call_is_added(yard, items, problem):
    yard.register_batcher("b", key="k", max_batch_size=10, on_flush="sink", max_open_keys=2)
    yard.add("b", [{"k": "kept"}])
    with pytest.raises(InvalidInput, match=problem.replace("[", r"\[").replace("]", r"\]")):
        yard.add("b", items)
    assert list(yard.get_batcher_status("b").keys) == ["kept"]  # what came before: kept
    assert yard.get_batch_status("b:kept")[0].item_count == 1


def test_registration_is_checked(yard):
    with pytest.raises(InvalidInput, match="name"):
        yard.register_batcher("a:b", key="k", max_batch_size=10, on_flush="sink")
    with pytest.raises(InvalidInput, match="max_open_keys"):
        yard.register_batcher("a", key="k", max_batch_size=10, on_flush="sink", max_open_keys=0)
    with pytest.raises(InvalidInput, match="max_batch_size"):
        yard.register_batcher("a", key="k", max_batch_size=0, on_flush="sink")
    with pytest.raises(NotFound, match="no batcher is registered as 'nope'"):
        yard.add("nope", [{"k": 1}])


def test_the_producer_adds_through_a_batcher_keeping_its_bound(yard):
    yard.register_batcher(
        "events", key="k", max_batch_size=50, on_flush="sink", max_open_keys=MAX_OPEN
    )
    with yard.producer(write_interval=0.001) as producer:
        for n in range(300):
            producer.add_to("events", [{"k": f"k{n % KEYS}", "n": n}])
            if n % 37 == 0:
                producer.flush()  # durable now: the bound holds in what was written
                assert yard.get_batcher_status("events").open_keys <= MAX_OPEN
        with pytest.raises(InvalidInput, match="no field 'k'"):
            producer.add_to("events", [{"k": "k1"}, {"x": 1}])
    assert yard.get_batcher_status("events").open_keys == MAX_OPEN
    drain(yard, "events")
    streams = by_key(yard.delivered)
    assert len(streams) == KEYS
    for base, items in streams.items():
        numbers = [item["n"] for item in items]
        assert numbers == sorted(numbers) and {n % KEYS for n in numbers} == {int(base[8:])}
    assert sorted(n for items in streams.values() for n in (i["n"] for i in items)) == list(
        range(300)
    )
