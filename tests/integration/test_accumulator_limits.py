"""Byte limits and debounce of accumulator batches, on a real store (both backends), and
through the other ways in to the accumulator: batchers (`add` and the producer's `add_to`),
AsyncYard, and ordered bases."""

from __future__ import annotations

import asyncio
import random
import threading

import orjson
import pytest

from batchyard import BatchStatus, InvalidInput, RetryPolicy
from tests.threads import run_together


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


def size(item):
    """An item's size as the accumulator counts it: its JSON text in UTF-8."""
    return len(orjson.dumps(item))


def text(n_bytes):
    """A JSON string of exactly `n_bytes` bytes of JSON (quotes included)."""
    return "x" * (n_bytes - 2)


# -- byte limits ----------------------------------------------------------------------------


def test_a_batch_closes_when_the_next_item_would_pass_its_byte_limit(yard, calls):
    config = {"max_batch_size": 100, "on_flush": "collect", "max_batch_bytes": 100}
    yard.add_items("ev", [text(40), text(40)], **config)
    result = yard.add_items("ev", [text(30)], **config)  # 110 bytes: the next batch's
    assert result.batch_id == "ev::1" and result.flushed
    assert result.flushed_batch_ids == ("ev::0",)
    [open_batch] = [b for b in yard.get_batch_status("ev") if b.batch_id == "ev::1"]
    assert (open_batch.byte_count, open_batch.max_batch_bytes) == (30, 100)
    yard.add_items("ev", [text(70)], **config)  # exactly 100 bytes: full, closed
    yard.run_worker(wait=False)
    assert [(b, [size(i) for i in items], r) for b, items, r in calls] == [
        ("ev::0", [40, 40], "size"),
        ("ev::1", [30, 70], "size"),
    ]


def test_bytes_are_counted_in_utf8_and_one_add_spans_batches_by_bytes(yard, calls):
    items = ["é" * 9] * 5  # 20 bytes of JSON each, 11 characters
    assert size(items[0]) == 20
    result = yard.add_items("ev", items, max_batch_size=100, on_flush="collect", max_batch_bytes=50)
    assert result.flushed_batch_ids == ("ev::0", "ev::1")
    assert result.batch_id == "ev::2" and result.status == BatchStatus.ACCUMULATING
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert sorted((b, len(items)) for b, items, _ in calls) == [
        ("ev::0", 2),
        ("ev::1", 2),
        ("ev::2", 1),
    ]
    [last] = yard.get_batch_status("ev::2")
    assert (last.byte_count, last.item_count) == (20, 1)


def test_the_item_count_still_limits_a_byte_limited_batch(yard, calls):
    for n in range(7):
        yard.add_items("ev", [n], max_batch_size=3, on_flush="collect", max_batch_bytes=10_000)
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert sorted((b, items) for b, items, _ in calls) == [
        ("ev::0", [0, 1, 2]),
        ("ev::1", [3, 4, 5]),
        ("ev::2", [6]),
    ]


def test_a_batch_keeps_the_byte_limit_it_was_made_with_whoever_adds_to_it(yard, calls):
    yard.add_items("ev", [text(30)], max_batch_size=10, on_flush="collect", max_batch_bytes=50)
    plain = {"max_batch_size": 10, "on_flush": "collect"}  # adders without a byte limit
    yard.add_items("ev", [text(10)], **plain)  # one item: 40 of 50
    yard.add_items("ev", [text(10), text(10)], **plain)  # 50 of 50 (full), then the next
    yard.add_items("ev", [text(30)], **plain)
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert sorted((b, [size(i) for i in items]) for b, items, _ in calls) == [
        ("ev::0", [30, 10, 10]),
        ("ev::1", [10, 30]),  # made without a byte limit
    ]


def test_an_append_at_a_remembered_position_checks_the_bytes_itself(yard, calls):
    # what a yard remembers of the open batch is a guess: the statement that appends at a
    # remembered position reads the bytes of the item before it, and refuses to pass the
    # limit even when the guess says there is room
    config = {"max_batch_size": 10, "on_flush": "collect", "max_batch_bytes": 50}
    yard.add_items("ev", [text(20)], **config)
    yard.add_items("ev", [text(20)], **config)
    yard._accumulator.adder._open["ev"].bytes = 0  # as if stale
    result = yard.add_items("ev", [text(20)], **config)
    assert result.batch_id == "ev::1" and result.flushed_batch_ids == ("ev::0",)


def test_an_item_larger_than_the_limit_is_refused_naming_it_and_nothing_of_the_call_is_kept(
    yard, calls
):
    config = {"max_batch_size": 10, "on_flush": "collect", "max_batch_bytes": 50}
    yard.add_items("ev", ["kept"], **config)
    with pytest.raises(InvalidInput, match=r"items\[2\] is 62 bytes of JSON") as raised:
        yard.add_items("ev", ["a", "b", text(62), "c"], **config)
    assert raised.value.index == 2 and raised.value.field == "items"
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert [items for _, items, _ in calls] == [["kept"]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_batch_bytes must be a positive integer"),
        (True, "max_batch_bytes must be a positive integer"),
        (1.5, "max_batch_bytes must be a positive integer"),
    ],
)
def test_a_bad_byte_limit_is_refused(yard, calls, value, message):
    with pytest.raises(InvalidInput, match=message):
        yard.add_items("ev", [1], max_batch_size=5, on_flush="collect", max_batch_bytes=value)
    assert yard.get_batch_status("ev") == []


def test_threads_adding_under_both_limits_never_pass_either_and_place_every_item_once(
    yard, calls, make_yard, clock
):
    """The stated figure: 10,000 adds of items from 10 B to 5 KB by 8 threads, with
    max_batch_bytes=64_000 and max_batch_size=1000. The threads of one yard meet in its
    lane (one add in flight per base), so two of them add through yards of their own (a
    connection each, as other processes would): their adds race in the store, where what
    each yard remembers of the open batch goes stale. Most adds are of one item (the
    one-statement appends, and the lanes' many-item append); every tenth carries several
    (the transaction that fills and opens batches). No handler call passes either limit,
    every item is delivered exactly once, and an oversized item is refused at add."""
    config = {"max_batch_size": 1000, "on_flush": "collect", "max_batch_bytes": 64_000}
    adds_per_thread = 10_000 // 8
    added: list[list[int]] = [[] for _ in range(8)]
    yards = [make_yard(clock=clock), make_yard(clock=clock)] + [yard] * 6
    for other in yards[:2]:  # they only add: the handler's name must be known
        other.handler("collect")(lambda items, ctx: None)

    def adder(thread):
        rng = random.Random(thread)
        for n in range(adds_per_thread):
            count = rng.randint(2, 5) if n % 10 == 9 else 1
            items = []
            for k in range(count):
                ident = (thread * adds_per_thread + n) * 10 + k
                pad = rng.randint(0, 5000 - 30)
                items.append({"id": ident, "pad": ("é" if ident % 7 == 0 else "x") * (pad // 2)})
            yards[thread].add_items("ev", items, **config)
            added[thread] += [item["id"] for item in items]
        if thread == 0:
            with pytest.raises(InvalidInput, match=r"items\[1\] is 64\d{3} bytes"):
                yards[thread].add_items("ev", [{"id": -1}, {"pad": "x" * 64_000}], **config)

    run_together(adder, 8)
    yard.flush("ev")
    yard.run_worker(wait=False)
    delivered = [item["id"] for _, items, _ in calls for item in items]
    assert sorted(delivered) == sorted(i for ids in added for i in ids)
    assert len(delivered) == len(set(delivered))
    assert max(len(items) for _, items, _ in calls) <= 1000
    assert max(sum(size(i) for i in items) for _, items, _ in calls) <= 64_000
    # batches closed for their bytes: the item after them did not fit
    assert sum(reason == "size" for _, _, reason in calls) >= len(calls) - 1


# -- debounce -------------------------------------------------------------------------------


def test_adds_every_half_idle_keep_a_batch_open_until_its_interval_and_a_pause_flushes(
    yard, calls, clock
):
    config = {
        "max_batch_size": 1000,
        "on_flush": "collect",
        "flush_interval": 60,
        "flush_after_idle": 10,
    }
    for n in range(12):  # t = 0, 5, ... 55: an add every S/2
        yard.add_items("ev", [n], **config)
        yard.run_worker(wait=False)
        assert calls == []
        clock.advance(5)
    yard.run_worker(wait=False)  # t = 60: the longest wait, whatever the adds
    assert calls == [("ev::0", list(range(12)), "interval")]
    yard.add_items("ev", [12], **config)
    clock.advance(5)
    yard.add_items("ev", [13], **config)
    clock.advance(9.5)
    yard.run_worker(wait=False)
    assert len(calls) == 1
    clock.advance(0.5)  # a pause of S since the last add
    yard.run_worker(wait=False)
    assert calls[1:] == [("ev::1", [12, 13], "idle")]
    [record] = yard.get_flush_history("ev::1")
    assert record.reason == "idle" and record.attempt == 1  # the timer's waits are no attempts


def test_debounce_without_an_interval_waits_for_the_pause_alone(yard, calls, clock):
    config = {"max_batch_size": 1000, "on_flush": "collect", "flush_after_idle": 10}
    for n in range(30):
        yard.add_items("ev", [n], **config)
        clock.advance(9)
        yard.run_worker(wait=False)
    assert calls == []
    clock.advance(1)
    yard.run_worker(wait=False)
    assert calls == [("ev::0", list(range(30)), "idle")]


def test_a_batch_that_fills_while_its_idle_timer_waits_flushes_at_once(yard, calls, clock):
    config = {"max_batch_size": 3, "on_flush": "collect", "flush_after_idle": 10}
    yard.add_items("ev", [0], **config)
    clock.advance(8)
    yard.add_items("ev", [1], **config)
    clock.advance(2)
    yard.run_worker(wait=False)  # the timer waits again, until t = 18
    assert calls == []
    yard.add_items("ev", [2], **config)  # fills it
    yard.run_worker(wait=False)
    assert calls == [("ev::0", [0, 1, 2], "size")]


def test_status_shows_the_debounce_and_the_last_add_and_cron_flushes_idle_batches(
    yard, calls, clock
):
    config = {"max_batch_size": 10, "on_flush": "collect", "flush_after_idle": 30}
    yard.add_items("a", [1], **config)
    yard.add_items("b", [2], max_batch_size=10, on_flush="collect")
    clock.advance(20)
    yard.add_items("a", [3], **config)
    [batch] = yard.get_batch_status("a")
    assert batch.flush_after_idle == 30 and batch.max_batch_bytes is None
    assert batch.last_added_at.timestamp() == pytest.approx(clock.time())
    assert batch.byte_count is None  # kept for byte-limited batches only
    clock.advance(29)
    assert yard.trigger_interval_flushes() == []
    clock.advance(1)
    assert yard.trigger_interval_flushes() == ["a::0"]
    yard.run_worker(wait=False)
    assert calls == [("a::0", [1, 3], "idle")]


@pytest.mark.parametrize("value", [0, -1, "5", True])
def test_a_bad_idle_time_is_refused(yard, calls, value):
    with pytest.raises(InvalidInput, match="flush_after_idle must be"):
        yard.add_items("ev", [1], max_batch_size=5, on_flush="collect", flush_after_idle=value)


# -- the producer ---------------------------------------------------------------------------


def test_the_producer_keeps_byte_limits_and_refuses_an_oversized_item_at_add(yard, calls, clock):
    config = {
        "max_batch_size": 100,
        "on_flush": "collect",
        "max_batch_bytes": 1000,
        "flush_after_idle": 5,
        "flush_interval": 60,
    }
    with yard.producer(write_interval=0.01) as producer:
        for n in range(40):
            producer.add("ev", [{"n": n, "pad": text(90)}], **config)
        with pytest.raises(InvalidInput, match=r"items\[0\] is 1002 bytes"):
            producer.add("ev", [text(1002)], **config)
        producer.flush()
    clock.advance(5)
    yard.run_worker(wait=False)
    delivered = [item["n"] for _, items, _ in calls for item in items]
    assert sorted(delivered) == list(range(40))
    assert max(sum(size(i) for i in items) for _, items, _ in calls) <= 1000
    assert [reason for _, _, reason in calls].count("idle") == 1  # the last batch's


# -- through the other ways in ------------------------------------------------------------

LIMITS = {"max_batch_size": 100, "max_batch_bytes": 100, "on_flush": "collect"}


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


def test_the_producer_makes_ordered_bases_whose_dead_batch_holds_the_rest(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=1))
    arrived = []

    @yard.handler("first-fails")
    def first_fails(items, ctx):
        if ctx.sequence == 0:
            raise RuntimeError("the sink is down")
        arrived.append(ctx.batch_id)

    config = {"max_batch_size": 2, "on_flush": "first-fails", "ordered": True}
    with yard.producer(write_interval=0.01) as producer:
        for n in range(6):
            producer.add("ev", [n], **config)
        producer.add("plain", [1, 2], max_batch_size=2, on_flush="first-fails")
    yard.run_worker(wait=False)
    status = yard.get_batch_status("ev")
    assert [(b.batch_id, b.status, b.ordered, b.blocked_by) for b in status] == [
        ("ev::0", "dead", True, None),
        ("ev::1", "flushing", True, "ev::0"),
        ("ev::2", "flushing", True, "ev::0"),
    ]
    assert not yard.get_batch_status("plain::0")[0].ordered
    yard.discard_batch("ev::0")
    yard.run_worker(wait=False)
    assert arrived == ["ev::1", "ev::2"]
