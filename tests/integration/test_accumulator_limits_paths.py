"""Byte limits and debounce through the other ways in to the accumulator, on both stores:
batchers (`add` and the producer's `add_to`), AsyncYard, and ordered bases."""

from __future__ import annotations

import asyncio
import threading

import pytest

from batchyard import InvalidInput, RetryPolicy

from .test_accumulator_limits import size, text

LIMITS = {"max_batch_size": 100, "max_batch_bytes": 100, "on_flush": "collect"}


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


@pytest.fixture
def calls(yard):
    """Every handler call as (batch_id, items, reason)."""
    seen = []
    lock = threading.Lock()

    @yard.handler("collect")
    def collect(items, ctx):
        with lock:
            seen.append((ctx.batch_id, list(items), ctx.reason))

    return seen


def by_batch(calls):
    return {batch_id: [size(i) for i in items] for batch_id, items, _ in calls}


def test_a_batcher_keeps_its_byte_limit_and_debounce(yard, calls, clock):
    yard.register_batcher("ev", key="k", **LIMITS, flush_after_idle=5, flush_interval=60)
    for _ in range(6):  # 30 bytes each (with its key): three fit in 100 bytes
        yard.add("ev", [{"k": "a", "p": text(16)}])
    yard.run_worker(wait=False)
    assert by_batch(calls) == {"ev:a::0": [30] * 3}  # closed by bytes at the fourth
    clock.advance(5)
    yard.run_worker(wait=False)
    assert by_batch(calls) == {"ev:a::0": [30] * 3, "ev:a::1": [30] * 3}
    assert calls[-1][2] == "idle"


def test_a_batcher_refuses_an_item_past_its_byte_limit_before_any_key_is_added(
    yard,
    calls,
):
    yard.register_batcher("ev", key="k", **LIMITS)  # unbounded: an add per key
    with pytest.raises(InvalidInput, match=r"items\[1\] is 1\d\d bytes") as raised:
        yard.add("ev", [{"k": "a"}, {"k": "b", "p": text(100)}])
    assert raised.value.index == 1
    assert list(yard.get_batcher_status("ev").keys) == []


def test_the_producer_through_a_batcher_keeps_its_byte_limit(yard, calls):
    yard.register_batcher("ev", key="k", **LIMITS, max_open_keys=2)
    with yard.producer(write_interval=0.001) as producer:
        for n in range(60):
            producer.add_to("ev", [{"k": f"k{n % 3}", "n": n, "p": text(20)}])
        with pytest.raises(InvalidInput, match=r"items\[0\] is \d+ bytes"):
            producer.add_to("ev", [{"k": "k0", "p": text(100)}])
        producer.flush()
    for key in ("k0", "k1", "k2"):
        yard.flush(f"ev:{key}")
    yard.run_worker(wait=False)
    assert sorted(item["n"] for _, items, _ in calls for item in items) == list(range(60))
    assert max(sum(by_batch_items) for by_batch_items in by_batch(calls).values()) <= 100


def test_async_adds_keep_byte_limits_and_debounce(yard, calls, clock):
    async def main() -> None:
        adds = [
            yard.aio.add_items("ev", [text(30)], **LIMITS, flush_after_idle=5) for _ in range(7)
        ]
        await asyncio.gather(*adds)
        with pytest.raises(InvalidInput, match=r"items\[0\] is 101 bytes"):
            await yard.aio.add_items("ev", [text(101)], **LIMITS)

    asyncio.run(main())
    yard.run_worker(wait=False)
    assert list(by_batch(calls).values()) == [[30] * 3, [30] * 3]
    clock.advance(5)
    yard.run_worker(wait=False)
    assert list(by_batch(calls).values()) == [[30] * 3, [30] * 3, [30]]
    assert calls[-1][2] == "idle"


def test_an_ordered_base_closed_by_bytes_hands_its_batches_over_in_order(
    yard,
    calls,
):
    result = yard.add_items("ev", [text(40)] * 7, **LIMITS, ordered=True)
    assert result.flushed_batch_ids == ("ev::0", "ev::1", "ev::2")
    assert [b.ordered for b in yard.get_batch_status("ev")] == [True] * 4
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert [batch_id for batch_id, _, _ in calls] == ["ev::0", "ev::1", "ev::2", "ev::3"]
    assert list(by_batch(calls).values()) == [[40, 40]] * 3 + [[40]]
