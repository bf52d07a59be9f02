"""Pruning after the retention goes in bounded steps, and every step leaves the books whole."""

from __future__ import annotations

import pytest

from batchyard import maintenance
from batchyard.accumulator.pruning import Pruner

RETENTION = 3600.0
LIMITS = {"items": 5, "batches": 3, "flushes": 4}


def books(yard):
    """Every batch with its status and item rows, and the rows that belong to no batch."""
    with yard.store.transaction() as tx:
        batches = {
            r["batch_id"]: (r["status"], int(r["n"]))
            for r in tx.all(
                "SELECT b.batch_id, b.status, (SELECT COUNT(*) FROM batchyard_items i "
                "WHERE i.batch_no = b.batch_no) AS n FROM batchyard_batches b"
            )
        }
        stray = sum(
            int(
                tx.one(
                    f"SELECT COUNT(*) AS n FROM {table} t WHERE NOT EXISTS "
                    "(SELECT 1 FROM batchyard_batches b WHERE b.batch_no = t.batch_no)"
                )["n"]
            )
            for table in ("batchyard_items", "batchyard_item_failures")
        )
        flushes = int(tx.one("SELECT COUNT(*) AS n FROM batchyard_flushes")["n"])
    return batches, stray, flushes


@pytest.fixture
def aged(make_yard, clock):
    """A yard holding, past the retention: 9 completed batches of 2 items, a discarded
    batch of 3 whose flush failed, and a dead batch of 3 (live: never pruned); and, young, an
    open batch of 1 item."""
    yard = make_yard(clock=clock, retention=RETENTION)
    yard.handler("noop")(lambda items, ctx: None)

    @yard.handler("down")
    def down(items, ctx):
        raise ConnectionError("sink is down")

    yard.add_items("done", list(range(18)), max_batch_size=2, on_flush="noop")
    for base in ("given-up", "dead"):
        yard.add_items(base, [1, 2, 3], max_batch_size=3, on_flush="down", max_attempts=1)
    yard.run_worker(wait=False)
    yard.discard_batch("given-up::0")
    clock.advance(RETENTION + 1)
    yard.add_items("open", [1], max_batch_size=5, on_flush="noop")
    return yard


def finished(batches):
    return {b for b, (status, _) in batches.items() if status in ("completed", "discarded")}


def test_a_prune_goes_in_bounded_steps_each_leaving_whole_batches(aged):
    before, stray, flushes = books(aged)
    assert len(finished(before)) == 10 and stray == 0 and flushes == 12
    live = {b: v for b, v in before.items() if b not in finished(before)}
    assert set(live) == {"dead::0", "open::0"}
    pruner = Pruner(aged.runtime, **LIMITS)

    steps = []
    while True:
        step = pruner.step(RETENTION)
        steps.append(step)
        batches, stray, _ = books(aged)
        # whatever is left is whole: each batch with every item it had, no stray rows
        assert stray == 0
        assert all(batches[b] == before[b] for b in batches)
        assert {b: v for b, v in batches.items() if b in live} == live
        assert step.batches <= LIMITS["batches"] and step.flushes <= LIMITS["flushes"]
        assert step.items <= LIMITS["items"] or step.batches == 1
        if not step.more:
            break

    assert len(steps) >= 4  # 10 batches of 2-3 items, 12 flushes: several steps
    assert sum(s.batches for s in steps) == 10
    assert sum(s.items for s in steps) == 9 * 2 + 3
    assert books(aged) == (live, 0, 0)
    assert pruner.step(RETENTION) == pruner.step(RETENTION)  # nothing left: a no-op


def test_a_prune_stopped_between_steps_loses_nothing_live_and_goes_on_later(aged, make_yard):
    before, _, _ = books(aged)
    live = {b: v for b, v in before.items() if b not in finished(before)}
    first = Pruner(aged.runtime, **LIMITS).step(RETENTION)  # ... and the process dies
    assert first.more

    batches, stray, _ = books(aged)
    assert stray == 0 and all(batches[b] == before[b] for b in batches)
    assert 0 < len(finished(batches)) < 10
    assert {b: v for b, v in batches.items() if b in live} == live
    assert [b.batch_id for b in aged.get_batch_status("dead")] == ["dead::0"]

    restarted = make_yard(clock=aged.clock, retention=RETENTION)
    assert first.batches + restarted._accumulator.pruner.prune(RETENTION) == 10
    assert books(aged) == (live, 0, 0)
    assert aged.add_items("open", [2], max_batch_size=5, on_flush="noop").batch_id == "open::0"


def test_the_maintenance_task_prunes_a_step_at_a_time_queueing_itself_again(aged, monkeypatch):
    # Red before: the task pruned everything in one transaction and ran once.
    monkeypatch.setattr(maintenance, "PRUNE_STEPS_PER_RUN", 1)
    aged._accumulator.pruner = Pruner(aged.runtime, **LIMITS)
    before, _, _ = books(aged)
    live = {b: v for b, v in before.items() if b not in finished(before)}

    aged.runtime.kinds.worker_started()
    aged.clock.advance(RETENTION)  # the prune falls due
    runs = aged.run_worker(wait=False)

    assert runs >= 5  # one step a run: 10 batches two by two
    assert books(aged) == (live, 0, 0)
    with aged.store.transaction() as tx:  # and the next prune waits for its time again
        task = tx.one("SELECT due_at FROM batchyard_tasks WHERE kind = 'maintenance.prune'")
        assert float(task["due_at"]) > aged.clock.time()
