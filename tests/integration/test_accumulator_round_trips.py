"""What an add costs across a network: its round trips to PostgreSQL, counted by a proxy
that stands for a slow network (see `tests.faults.proxy`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchyard import Yard
from tests.faults.proxy import FaultyProxy

# long enough that a client's pipelined burst always reaches the proxy before the answer to
# its first statement comes back, however loaded the machine: the count is then exact
DELAY_SECONDS = 0.1


@pytest.fixture
def slow(pg_database: str) -> Iterator[tuple[FaultyProxy, Yard]]:
    proxy = FaultyProxy(pg_database, delay=DELAY_SECONDS)
    yard = Yard(proxy.url)
    yard.handler("noop")(lambda items, ctx: None)
    yield proxy, yard
    yard.close()
    proxy.close()


def round_trips(proxy: FaultyProxy, yard: Yard, base: str, items: list, **config) -> int:
    """The round trips of one add, after one alike (which makes the base's row: a statement
    once per base and process)."""
    config = {"on_flush": "noop", **config}
    yard.add_items(base, items, **config)
    proxy.round_trips = 0
    yard.add_items(base, items, **config)
    return proxy.round_trips


@pytest.mark.parametrize(
    ("items", "config"),
    [
        pytest.param([1], {"max_batch_size": 1}, id="opens-a-batch-and-closes-it"),
        pytest.param(list(range(25)), {"max_batch_size": 10}, id="fills-batches-leaves-one-open"),
        pytest.param(
            list(range(25)), {"max_batch_size": 10, "flush_interval": 60}, id="with-a-timer"
        ),
        pytest.param([1], {"max_batch_size": 1, "ordered": True}, id="ordered"),
        pytest.param(
            ["x" * 20] * 5, {"max_batch_size": 10, "max_batch_bytes": 50}, id="byte-limited"
        ),
    ],
)
def test_an_add_that_opens_or_fills_batches_waits_for_the_server_twice(slow, items, config):
    """Once for the base's lock with its open batch and count, which the placement depends
    on; everything else - new batches, items, flush tasks - goes with the commit."""
    proxy, yard = slow
    assert round_trips(proxy, yard, "b", items, **config) == 2


def test_a_single_item_after_a_fill_goes_straight_to_the_batch_left_open(slow):
    proxy, yard = slow
    assert round_trips(proxy, yard, "b", list(range(12)), max_batch_size=10) == 2
    # b::0 and b::1 full, b::2 left open with 4 items, remembered with its number (read
    # with the commit): the next single item goes to its position, one statement
    proxy.round_trips = 0
    result = yard.add_items("b", [1], max_batch_size=10, on_flush="noop")
    assert proxy.round_trips == 1
    assert result.batch_id == "b::2"
    assert [batch.item_count for batch in yard.get_batch_status("b::2")] == [5]


def test_a_producer_write_waits_for_the_server_once_per_base_written(slow):
    """Its transaction is pipelined: each base's statements go together up to the one read
    its add waits for, and the rest go with the next base's, or with the commit."""
    proxy, yard = slow
    bases = [f"p{n}" for n in range(4)]
    with yard.producer(write_interval=60.0) as producer:
        for base in bases:  # a first write makes the bases' rows
            producer.add(base, list(range(5)), max_batch_size=100, on_flush="noop")
        producer.flush()
        for base in bases:
            producer.add(base, list(range(5)), max_batch_size=100, on_flush="noop")
        proxy.round_trips = 0
        producer.flush()
        assert proxy.round_trips <= len(bases) + 1  # (was ~7 a base)
    assert sum(yard.get_batch_status(f"{base}::0")[0].item_count for base in bases) == 40
