"""The write-behind producer on both stores: checkpoints, backpressure, failures, fork."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest

from batchyard import Backpressure, InvalidInput, ProducerError, StoreError


@pytest.fixture
def yard(yard):
    """The shared yard (tests/conftest.py), with this module's handlers."""
    yard.delivered = []

    @yard.handler("collect")
    def collect(items, ctx):
        yard.delivered.extend(items)

    return yard


def stored_items(yard):
    with yard.store.transaction() as tx:
        rows = tx.all("SELECT payload FROM batchyard_items")
    return sorted(int(r["payload"]) for r in rows)


CONFIG = {"max_batch_size": 50, "on_flush": "collect"}


@contextlib.contextmanager
def store_faults(yard, *, fail_times=0, delay=0.0):
    """Make the real store slow and/or fail its next `fail_times` write transactions."""
    original = yard.store.transaction
    state = {"left": fail_times}

    @contextlib.contextmanager
    def faulty(now=None, *, write=True, pipeline=False):
        if delay:
            time.sleep(delay)
        if write and state["left"] != 0:
            state["left"] -= 1
            raise StoreError("injected failure")
        with original(now, write=write, pipeline=pipeline) as tx:
            yield tx

    yard.store.transaction = faulty
    try:
        yield state
    finally:
        yard.store.transaction = original


def test_items_become_durable_and_flush_like_add_items(yard):
    with yard.producer(write_interval=0.01) as producer:
        for n in range(120):
            checkpoint = producer.add("ev", [n], **CONFIG)
        assert checkpoint == producer.processed == 120
        assert producer.flush() == producer.durable == 120
        assert stored_items(yard) == list(range(120))
        stats = producer.stats()
        assert stats.pending_items == 0 and stats.writes >= 1 and stats.last_error is None
    yard.run_worker(wait=False)
    assert sorted(yard.delivered) == list(range(100))  # two full batches of 50 flushed
    [open_batch] = yard.get_batch_status("ev")
    assert open_batch.item_count == 20


def test_writes_are_coalesced_and_ordered(yard):
    with yard.producer(write_interval=0.5) as producer:
        for n in range(30):
            producer.add("a" if n % 2 else "b", [n], **CONFIG)
        producer.flush()
        assert producer.stats().writes == 1
    with yard.store.transaction() as tx:
        rows = tx.all(
            "SELECT b.batch_id, i.position, i.payload FROM batchyard_items i "
            "JOIN batchyard_batches b ON b.batch_no = i.batch_no "
            "ORDER BY b.batch_id, i.position"
        )
    for base in ("a::0", "b::0"):
        values = [int(r["payload"]) for r in rows if r["batch_id"] == base]
        assert values == sorted(values) and len(values) == 15


def test_wait_durable_for_a_checkpoint(yard):
    with yard.producer(write_interval=0.01) as producer:
        first = producer.add("ev", [1, 2], **CONFIG)
        producer.add("ev", [3], **CONFIG)
        assert producer.wait_durable(first, timeout=30) >= first


def test_bad_items_are_refused_at_add_and_nothing_of_the_call_is_buffered(yard):
    with yard.producer() as producer:
        producer.add("ev", [1], **CONFIG)
        with pytest.raises(InvalidInput, match=r"items\[1\]"):
            producer.add("ev", [2, object()], **CONFIG)
        with pytest.raises(InvalidInput, match="max_batch_size"):
            producer.add("ev", [2], max_batch_size=0, on_flush="collect")
        assert producer.processed == 1
    assert stored_items(yard) == [1]


def test_backpressure_holds_memory_at_the_target_and_times_out_clearly(yard):
    producer = yard.producer(max_pending_items=20, write_interval=0.0, add_timeout=0.3)
    peak = 0
    with store_faults(yard, delay=1.0):  # a write takes longer than add may block
        accepted = []
        with pytest.raises(Backpressure, match="producer buffer full"):
            for n in range(1000):
                producer.add("ev", [n, n + 100_000], **CONFIG)
                accepted.extend([n, n + 100_000])
                peak = max(peak, producer.stats().pending_items)
        assert peak <= 20
    producer.close()
    assert stored_items(yard) == sorted(accepted)  # every accepted item, once


def test_failures_then_recovery_land_everything_exactly_once(yard):
    with store_faults(yard, fail_times=3):
        producer = yard.producer(write_interval=0.0)
        for n in range(40):
            producer.add("ev", [n], **CONFIG)
        producer.flush(timeout=30)
    producer.close()
    assert stored_items(yard) == list(range(40))
    assert producer.stats().last_error is None


def test_persistent_failure_reaches_the_caller_and_items_stay_buffered(yard):
    from batchyard import RetryPolicy

    producer = yard.producer(
        write_interval=0.0, retry=RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0)
    )
    with store_faults(yard, fail_times=-1):
        producer.add("ev", [1, 2], **CONFIG)
        with pytest.raises(ProducerError, match="injected failure") as raised:
            producer.flush(timeout=30)
        assert isinstance(raised.value.__cause__, StoreError)
        assert producer.pending() == [("ev", [1, 2])]
        assert producer.stats().pending_items == 2 and producer.durable == 0
    assert producer.flush(timeout=30) == 2  # the store is back: a later retry writes them
    producer.close()
    assert stored_items(yard) == [1, 2]


def test_a_closed_producer_refuses_items(yard):
    producer = yard.producer()
    producer.close()
    with pytest.raises(ProducerError, match="closed"):
        producer.add("ev", [1], **CONFIG)


def test_concurrent_adders_lose_nothing(yard):
    producer = yard.producer(max_pending_items=500)

    def add_many(offset):
        for n in range(500):
            producer.add("ev", [offset + n], **CONFIG)

    threads = [threading.Thread(target=add_many, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    producer.close()
    assert stored_items(yard) == sorted(k * 1000 + n for k in range(4) for n in range(500))


def test_a_forked_child_writes_its_own_items_once_and_never_the_parents(yard):
    producer = yard.producer(write_interval=60)  # keep the parent's items in the buffer
    producer.add("ev", [1, 2, 3], **CONFIG)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read)
            assert producer.stats().pending_items == 0 and producer.processed == 0
            producer.add("ev", [100, 101], **CONFIG)
            producer.flush(timeout=30)
            code = 0
        finally:
            os.write(write, str(code).encode())
            os._exit(code)
    os.close(write)
    assert os.read(read, 8) == b"0"
    os.waitpid(pid, 0)
    os.close(read)
    assert producer.flush(timeout=30) == 3
    producer.close()
    assert stored_items(yard) == [1, 2, 3, 100, 101]
