"""The worker's claim loop: how much it holds, and what it gives back at a stop."""

from __future__ import annotations

import threading
import time

from batchyard import Yard
from batchyard.accumulator.records import FLUSH_TASK
from tests.servers import wait_until


def tasks_by_state(yard: Yard) -> dict[str, int]:
    with yard.store.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT state, count(*) AS n FROM batchyard_tasks WHERE kind = :kind GROUP BY state",
            {"kind": FLUSH_TASK},
        )
    return {row["state"]: int(row["n"]) for row in rows}


def test_a_worker_claims_ahead_no_more_than_its_prefetch_and_gives_back_what_it_did_not_start(
    make_yard, clock
):
    yard = make_yard(clock=clock)
    gate = threading.Event()
    started: list[int] = []

    @yard.handler("slow")
    def slow(items, ctx):
        started.append(items[0])
        gate.wait(60)

    for n in range(6):  # six flushes due
        yard.add_items("ev", [n], max_batch_size=1, on_flush="slow")
    worker = yard.worker(concurrency=2, prefetch=1, poll_interval=0.01)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: len(started) == 2, what="both threads ran a flush")
        wait_until(lambda: tasks_by_state(yard).get("running") == 3, what="one claimed ahead")
        turns = set()
        wait_until(lambda: len(turns.add(worker.last_cycle) or turns) > 3, what="the loop turned")
        # both threads busy and one task waiting for them: the loop claims nothing more,
        # and the waiting task's lease is kept by the heartbeat like the running ones'
        assert tasks_by_state(yard) == {"running": 3, "queued": 3}
        assert len(started) == 2 and len(worker._inflight) == 3
        worker.stop()
        # the task claimed ahead goes back at once, its attempt not counted, while the two
        # that started still run
        wait_until(
            lambda: tasks_by_state(yard).get("queued") == 4, what="the waiting one given back"
        )
        assert len(started) == 2
    finally:
        gate.set()
        thread.join(60)
    assert not thread.is_alive()
    assert sorted(started) == sorted(set(started)) and len(started) == 2
    with yard.store.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT state, attempts FROM batchyard_tasks WHERE kind = :kind", {"kind": FLUSH_TASK}
        )
    assert [(row["state"], row["attempts"]) for row in rows] == [("queued", 0)] * 4


def test_an_idle_worker_asked_to_stop_does_not_wait_out_its_poll_interval(make_yard):
    # on PostgreSQL an idle worker waits on its LISTEN connection: the stop, set in this
    # process, must end that wait too (it once waited for a NOTIFY or the poll interval)
    yard = make_yard()
    worker = yard.worker(concurrency=1, poll_interval=60.0)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(1.0)  # nothing to do: it waits for work
    worker.stop()
    thread.join(timeout=30.0)  # half the poll interval: a stop that waited it out is caught
    assert not thread.is_alive()
