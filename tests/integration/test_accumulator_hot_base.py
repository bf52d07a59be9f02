"""Many threads adding to one base through one yard (both backends): the adds that wait
for the one in flight go together as one, and each call still gets exact books."""

from __future__ import annotations

import random
import threading

from batchyard import BatchStatus, RetryPolicy

SIZE = 7


def test_sixteen_threads_adding_to_one_base_make_exact_batches(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))
    delivered: list[tuple[str, list[int]]] = []

    @yard.handler("collect")
    def collect(items, ctx):
        delivered.append((ctx.batch_id, list(items)))

    added: list[tuple[list[int], object]] = []  # each call's items, and what it returned
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def adder(thread: int) -> None:
        rng = random.Random(thread)
        try:
            start.wait()
            for call in range(60):
                # mostly single items; now and then a run that fills or spans batches
                count = 1 if rng.random() < 0.7 else rng.randint(2, 3 * SIZE)
                items = [thread * 1_000_000 + call * 100 + i for i in range(count)]
                result = yard.add_items("hot", items, max_batch_size=SIZE, on_flush="collect")
                added.append((items, result))
        except BaseException as exc:  # reported below, with the threads joined
            errors.append(exc)

    threads = [threading.Thread(target=adder, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    yard.flush("hot")
    yard.run_worker(wait=False)

    batches = sorted(delivered, key=lambda call: int(call[0].split("::")[1]))
    assert len({batch_id for batch_id, _ in batches}) == len(batches)  # one flush each
    # every batch closed for its size holds exactly SIZE; only the last, flushed by hand,
    # holds fewer
    assert [len(items) for _, items in batches[:-1]] == [SIZE] * (len(batches) - 1)
    assert 0 < len(batches[-1][1]) <= SIZE
    stream = [item for _, items in batches for item in items]
    every = [item for items, _ in added for item in items]
    assert len(stream) == len(every) and sorted(stream) == sorted(every)  # none lost or doubled
    where = {item: index for index, item in enumerate(stream)}
    batch_of = {item: batch_id for batch_id, items in batches for item in items}
    for items, result in added:
        first = where[items[0]]  # whole and in order
        assert [where[item] for item in items] == list(range(first, first + len(items)))
        # each call's result is what it would have been alone: the batch of its last item,
        # and the batches whose last item it brought
        last = items[-1]
        closes = [batch_of[item] for item in items if (where[item] + 1) % SIZE == 0]
        assert result.item_count == len(items)
        assert result.batch_id == batch_of[last]
        assert result.flushed_batch_ids == tuple(closes)
        assert result.flushed == bool(closes)
        closed_by_it = (where[last] + 1) % SIZE == 0
        assert result.status == (BatchStatus.FLUSHING if closed_by_it else BatchStatus.ACCUMULATING)
