"""What an add, and a read of status, costs across a network: its round trips to PostgreSQL,
counted by a proxy that stands for a slow network (see `tests.faults.proxy`)."""

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


def test_a_status_read_waits_for_the_server_once(slow):
    # a read needs no transaction: no BEGIN and COMMIT, each a round trip of its own
    proxy, yard = slow
    yard.add_items("b", [1, 2], max_batch_size=10, on_flush="noop")
    proxy.round_trips = 0
    [batch] = yard.get_batch_status("b")
    assert batch.pending_count == 2
    assert proxy.round_trips == 1


@pytest.mark.parametrize("read", ["list_batches", "page_batches"])
def test_a_list_of_batches_waits_for_the_server_once(slow, read):
    proxy, yard = slow
    yard.add_items("b", [1, 2], max_batch_size=10, on_flush="noop")
    proxy.round_trips = 0
    if read == "list_batches":
        batches = yard.list_batches("accumulating")
    else:
        page = yard.page_batches("accumulating")
        batches, total = page.batches, page.total
        assert total == 1
    assert [b.batch_id for b in batches] == ["b::0"]
    assert proxy.round_trips == 1


@pytest.mark.parametrize("parallelism", [1, 2])
def test_an_iterator_status_read_waits_for_the_server_once(slow, parallelism):
    proxy, yard = slow
    yard.handler("rows")(lambda cursor, size: {"items": [], "cursor": None, "done": True})
    yard.start_iterator(
        "j", batch_size=10, get_next_batch="rows", process_batch="noop", parallelism=1
    )
    if parallelism > 1:  # slices are cut by the job's first step; made here by hand
        with yard.store.transaction() as tx:
            tx.execute("UPDATE batchyard_iterators SET parallelism = 2 WHERE job_id = 'j'")
            for number in range(2):
                tx.execute(
                    "INSERT INTO batchyard_iterator_slices "
                    "(job_id, slice, cursor, total, started_at, updated_at) "
                    "VALUES ('j', :n, 'null', 5, 0, 0)",
                    {"n": number},
                )
    proxy.round_trips = 0
    status = yard.get_iterator_status("j")
    assert (status.status, len(status.slices)) == ("pending", 0 if parallelism == 1 else 2)
    assert proxy.round_trips == 1
