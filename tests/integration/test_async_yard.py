"""AsyncYard on both stores: adds from an event loop leave it free, go together on one base,
keep exact books; the other verbs are the Yard's, awaited."""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time

import pytest

from batchyard import AsyncYard, BatchStatus, HandlerNotFound, InvalidInput, RetryPolicy, Yard
from batchyard.accumulator.awaiting import ENCODE_ON_LOOP_ITEMS, LoopAdder

# The loop must never wait for the database: the largest gap between ticks of a 10 ms ticker
# stays near 10 ms on a quiet machine. The bound is set far above that, so that a CI machine
# under load (threads and the server competing for its cores) does not fail it, and far
# below what one blocked add would cost under that load (an add done on the loop holds it
# for its round trip and commit, and 1,000 of them for seconds).
MAX_TICK_GAP_SECONDS = 0.25
HOLD_SECONDS = 1.0


def _collecting(yard: Yard) -> list[tuple[str, list[object]]]:
    delivered: list[tuple[str, list[object]]] = []

    @yard.handler("collect")
    def collect(items, ctx):
        delivered.append((ctx.batch_id, list(items)))

    return delivered


def _hold_locks(yard: Yard, locked: threading.Event) -> None:
    """Hold the locks adds take (SQLite's write lock; PostgreSQL's base and batch rows, made
    first by an add) for HOLD_SECONDS, from a thread."""
    yard.add_items("loop", [{"task": -1, "call": -1}], max_batch_size=50, on_flush="collect")
    with yard.store.transaction() as tx:
        tx.all("SELECT base_id FROM batchyard_batch_bases {for_update}")
        tx.all("SELECT batch_no FROM batchyard_batches {for_update}")
        locked.set()
        time.sleep(HOLD_SECONDS)


def _in_order(delivered):
    """The batches flushed, in the order of their sequence (workers flush them in any)."""
    return sorted(delivered, key=lambda call: int(call[0].split("::")[1]))


def test_a_thousand_adds_from_one_loop_never_block_it_and_all_are_delivered(
    make_yard, record_property
):
    yard = make_yard()
    delivered = _collecting(yard)
    gaps: list[float] = []

    async def main() -> list[object]:
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def adder(task: int) -> list[object]:
            added = []
            for call in range(125):
                item = {"task": task, "call": call}
                await yard.aio.add_items("loop", [item], max_batch_size=50, on_flush="collect")
                added.append(item)
            return added

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)  # a tick or two before the first add
        # the store is slow to answer at first: another transaction holds the locks the
        # adds need for HOLD_SECONDS (an add made on the loop would stop it that long)
        locked = threading.Event()
        holding = asyncio.create_task(asyncio.to_thread(_hold_locks, yard, locked))
        await asyncio.to_thread(locked.wait)
        added = await asyncio.gather(*(adder(task) for task in range(8)))
        await holding
        done.set()
        await ticking
        return [item for each in added for item in each]

    added = asyncio.run(main())
    record_property("max_tick_gap_ms", round(max(gaps) * 1000, 1))
    print(f"largest gap between ticks: {max(gaps) * 1000:.1f} ms over {len(gaps)} ticks")
    assert max(gaps) < MAX_TICK_GAP_SECONDS
    assert len(added) == 1000
    assert sum(gaps) > HOLD_SECONDS  # the ticker ran while the adds waited
    yard.flush("loop")
    yard.run_worker(wait=False)
    items = [item for _, items in _in_order(delivered) for item in items]
    added.insert(0, {"task": -1, "call": -1})  # the add made before the locks were held
    assert sorted(items, key=repr) == sorted(added, key=repr)  # each once, none lost
    assert all(len(items) <= 50 for _, items in delivered)
    for task in range(8):  # one task's adds land in the order it made them
        assert [i["call"] for i in items if i["task"] == task] == list(range(125))


def test_awaits_on_one_base_go_together_with_exact_results(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))
    delivered = _collecting(yard)
    sends = []

    async def main() -> list[tuple[list[int], object]]:
        ayard = AsyncYard(yard)

        async def counting_hop(fn, *args):
            if isinstance(fn, functools.partial):  # an add's send (not an encoding)
                sends.append(len(args[0]))
            return await ayard.run_in_thread(fn, *args)

        adder = LoopAdder(yard.runtime, counting_hop)
        added = []

        async def task(number: int) -> None:
            rng = random.Random(number)
            for call in range(30):
                # mostly single items; now and then a run that fills or spans batches
                count = 1 if rng.random() < 0.7 else rng.randint(2, 20)
                items = [number * 1_000_000 + call * 100 + i for i in range(count)]
                result = await adder.add_items("hot", items, max_batch_size=7, on_flush="collect")
                added.append((items, result))

        await asyncio.gather(*(task(n) for n in range(8)))
        await ayard.aclose()
        return added

    added = asyncio.run(main())
    assert sum(sends) == len(added) == 240
    assert len(sends) < 240 / 2  # most adds carried several calls
    yard.flush("hot")
    yard.run_worker(wait=False)
    batches = _in_order(delivered)
    assert [len(items) for _, items in batches[:-1]] == [7] * (len(batches) - 1)
    stream = [item for _, items in batches for item in items]
    assert sorted(stream) == sorted(item for items, _ in added for item in items)
    where = {item: index for index, item in enumerate(stream)}
    batch_of = {item: batch_id for batch_id, items in batches for item in items}
    for items, result in added:
        first = where[items[0]]  # whole and in order
        assert [where[item] for item in items] == list(range(first, first + len(items)))
        closes = [batch_of[item] for item in items if (where[item] + 1) % 7 == 0]
        assert result.batch_id == batch_of[items[-1]]
        assert result.item_count == len(items)
        assert result.flushed_batch_ids == tuple(closes)
        closed = (where[items[-1]] + 1) % 7 == 0
        assert result.status == (BatchStatus.FLUSHING if closed else BatchStatus.ACCUMULATING)


def test_a_call_cancelled_while_it_waits_is_not_added(yard):
    _collecting(yard)

    async def main() -> None:
        ayard = AsyncYard(yard)
        release = asyncio.Event()

        async def held_hop(fn, *args):
            await release.wait()  # the first add stays in flight until released
            return await ayard.run_in_thread(fn, *args)

        adder = LoopAdder(yard.runtime, held_hop)

        def add(item: str):
            return adder.add_items("held", [item], max_batch_size=10, on_flush="collect")

        first = asyncio.create_task(add("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(add("second"))
        third = asyncio.create_task(add("third"))
        await asyncio.sleep(0)
        second.cancel()
        release.set()
        assert (await first).item_count == 1
        assert (await third).item_count == 1
        with pytest.raises(asyncio.CancelledError):
            await second
        await ayard.aclose()

    asyncio.run(main())
    items = [i.payload for i in yard.get_batch_items("held::0")]
    assert items == ["first", "third"]


def test_bad_input_is_refused_by_name_before_anything_is_stored(yard):
    _collecting(yard)

    async def main() -> None:
        ayard = yard.aio
        with pytest.raises(InvalidInput) as bad_size:
            await ayard.add_items("b", [1], max_batch_size=0, on_flush="collect")
        assert bad_size.value.field == "max_batch_size"
        with pytest.raises(InvalidInput) as bad_item:
            await ayard.add_items("b", [1, float("nan")], max_batch_size=5, on_flush="collect")
        assert bad_item.value.index == 1
        with pytest.raises(HandlerNotFound):
            await ayard.add_items("b", [1], max_batch_size=5, on_flush="nobody")
        big = [{"n": n} for n in range(ENCODE_ON_LOOP_ITEMS)] + [{"n": float("inf")}]
        with pytest.raises(InvalidInput) as bad_big:  # checked in a thread: the same error
            await ayard.add_items("b", big, max_batch_size=5, on_flush="collect")
        assert bad_big.value.index == ENCODE_ON_LOOP_ITEMS
        assert await ayard.get_batch_status("b") == []

    asyncio.run(main())


def test_a_large_add_fills_batches_as_the_yard_does(yard):
    delivered = _collecting(yard)
    items = list(range(ENCODE_ON_LOOP_ITEMS * 2 + 5))

    async def main() -> object:
        return await yard.aio.add_items("big", items, max_batch_size=400, on_flush="collect")

    result = asyncio.run(main())
    assert result.item_count == len(items)
    assert len(result.flushed_batch_ids) == len(items) // 400
    yard.flush("big")
    yard.run_worker(wait=False)
    assert [item for _, batch in _in_order(delivered) for item in batch] == items


def test_the_yards_other_verbs_awaited(store_url, tmp_path):
    async def main() -> None:
        async with AsyncYard.open(store_url) as ayard:
            delivered = []
            pages = {None: ([1, 2], "2"), "2": ([3], None)}

            @ayard.handler("collect")
            def collect(items, ctx):
                delivered.extend(items)

            @ayard.handler("next-page")
            def next_page(cursor, batch_size):
                items, after = pages[cursor]
                return {"items": items, "cursor": after, "done": after is None}

            ayard.handler("handle-page")(lambda items, ctx: None)

            await ayard.add_items("verbs", [1, 2], max_batch_size=10, on_flush="collect")
            assert (await ayard.flush("verbs")).batch_id == "verbs::0"
            await ayard.run_in_thread(ayard.yard.run_worker, wait=False)
            assert delivered == [1, 2]
            assert [r.outcome for r in await ayard.get_flush_history("verbs")] == ["completed"]

            submitted = await ayard.submit_batch_job(
                "import-things", [{"ns": "a", "id": "1", "type": "T", "data": {}}]
            )
            assert (await ayard.get_batch_job(submitted.job_id)).id == submitted.job_id

            status = await ayard.start_iterator(
                "walk", batch_size=2, get_next_batch="next-page", process_batch="handle-page"
            )
            assert status.status == "pending"
            assert (await ayard.pause_iterator("walk")).status == "paused"
            assert (await ayard.resume_iterator("walk")).status == "running"
            assert (await ayard.cancel_iterator("walk")).status == "cancelled"
            assert (await ayard.get_iterator_status("walk")).status == "cancelled"

            assert len(await ayard.append_events("clicks", [{"k": "a"}, {"k": "b"}])) == 2

    asyncio.run(main())


def test_a_yards_aio_is_made_once_and_shares_its_handlers(yard):
    assert yard.aio is yard.aio
    assert yard.aio.yard is yard

    @yard.aio.handler("shared")
    def shared(items, ctx):
        pass

    assert "shared" in yard.handlers
