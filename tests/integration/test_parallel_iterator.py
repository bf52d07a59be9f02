"""Parallel iterator jobs on both stores: slices of a keyset source, work stealing, and the
whole job's pause, resume, cancel, status and retry."""

from __future__ import annotations

import threading
import time

import pytest

from batchyard import Conflict, InvalidInput
from batchyard.sources import sql_keyset
from tests.servers import wait_until

ROWS = 2_000


@pytest.fixture
def yard(make_yard, clock):
    return prepared(make_yard(clock=clock))


def prepared(yard):
    """A yard with a source table whose keys bunch up: most rows share a few order values
    at the low end, a long thin tail above."""
    yard.calls = []
    yard.fail = {"n": 0}
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE par_src (id INTEGER PRIMARY KEY, at REAL NOT NULL)")
        tx.execute("CREATE INDEX par_src_at ON par_src (at, id)")
        tx.executemany(
            "INSERT INTO par_src (id, at) VALUES (:id, :at)",
            [{"id": n, "at": float(n // 500 if n < 1_500 else n)} for n in range(ROWS)],
        )
        tx.execute("CREATE TABLE par_sink (id INTEGER PRIMARY KEY)")  # a second time fails
    sql_keyset(yard, "par", table="par_src", order_by="at", tie_breaker="id")

    @yard.handler("collect")
    def collect(items, ctx):
        if yard.fail["n"]:
            yard.fail["n"] -= 1
            raise ValueError("sink refused")
        yard.calls.append((ctx.slice, ctx.page, ctx.idempotency_key, [r["id"] for r in items]))

    @yard.handler("sink")
    def sink(items, ctx):
        ctx.tx.executemany("INSERT INTO par_sink (id) VALUES (:id)", items)
        yard.calls.append((ctx.slice, ctx.page, ctx.idempotency_key, [r["id"] for r in items]))

    return yard


def start(yard, job="p", **options):
    options = {
        "delay_between_batches": 0,
        "batch_size": 50,
        "parallelism": 4,
        "process_batch": "collect",
        **options,
    }
    return yard.start_iterator(job, get_next_batch="par", **options)


def delivered(yard):
    return [i for *_, ids in yard.calls for i in ids]


def test_a_parallel_job_cuts_even_slices_of_a_skewed_key_and_delivers_every_row_once(yard):
    start(yard, process_batch="sink", transactional=True)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("p")
    assert status.status == "completed"
    assert status.processed == status.total == ROWS
    assert status.parallelism == 4 and len(status.slices) >= 4
    assert sum(s.total for s in status.slices) == ROWS  # (a split moves rows, adds none)
    assert all(s.done for s in status.slices)
    assert sum(s.processed for s in status.slices) == ROWS
    assert sorted(delivered(yard)) == list(range(ROWS))
    with yard.store.transaction(write=False) as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM par_sink")["n"] == ROWS
    keys = [key for _, _, key, _ in yard.calls]
    assert len(set(keys)) == len(keys)  # a page's key names its slice
    assert {number for number, *_ in yard.calls} == {s.slice for s in status.slices}


def test_a_slice_that_runs_out_takes_the_upper_half_of_the_largest_one(make_yard):
    """One slice's handler is slow: the others run out and split it, again and again, so
    the job ends with every slice done within a couple of pages of the others."""
    yard = prepared(make_yard())  # the system clock: a worker runs in a thread
    slow = threading.Event()

    @yard.handler("uneven")
    def uneven(items, ctx):
        if ctx.slice == 0 and not slow.is_set():
            time.sleep(0.02)
        yard.calls.append((ctx.slice, ctx.page, time.monotonic(), [r["id"] for r in items]))

    start(yard, process_batch="uneven", batch_size=20)
    worker = yard.worker(concurrency=4, poll_interval=0.01)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: yard.get_iterator_status("p").status == "completed", 60.0, "the job")
    finally:
        worker.stop()
        thread.join()
    status = yard.get_iterator_status("p")
    assert sorted(delivered(yard)) == list(range(ROWS))
    assert len(status.slices) > 4  # slice 0 was split
    assert status.last_error is None  # no split failed (two at once took the same numbers)
    assert status.slices[0].total < 500  # and gave away part of its range
    assert sum(s.total for s in status.slices) == ROWS


def test_a_keyset_source_cuts_by_count_not_by_key_value(yard):
    cuts = yard.runtime.handlers.get("par").slice(None, 4)
    assert [count for _, count in cuts] == [500, 500, 500, 500]
    assert cuts[0][0]["after"] is None and cuts[-1][0]["bound"] == [float(ROWS - 1), ROWS - 1]
    assert [c["bound"] for c, _ in cuts[:-1]] == [c["after"] for c, _ in cuts[1:]]
    lower, upper = yard.runtime.handlers.get("par").slice(cuts[3][0], 2)
    assert (lower[1], upper[1]) == (250, 250) and lower[0]["bound"] == upper[0]["after"]
    assert yard.runtime.handlers.get("par").slice(cuts[3][0] | {"after": [1999.0, 1999]}, 2) == [
        (cuts[3][0] | {"after": [1999.0, 1999]}, 0)
    ]


def test_bad_parallelism_is_refused_naming_the_field(yard):
    for bad in (0, -1, 65, 2.5, True):
        with pytest.raises(InvalidInput) as caught:
            start(yard, parallelism=bad)
        assert caught.value.field == "parallelism"
    yard.handler("plain")(lambda cursor, size: {"items": [], "done": True})
    with pytest.raises(InvalidInput, match="cut into ranges") as caught:
        yard.start_iterator(
            "q", batch_size=10, get_next_batch="plain", process_batch="collect", parallelism=2
        )
    assert caught.value.field == "parallelism"


def test_pause_resume_and_cancel_act_on_every_slice(yard, clock):
    start(yard, delay_between_batches=5.0)
    yard.run_worker(wait=False)  # the cut, then one page of each slice
    status = yard.get_iterator_status("p")
    assert len(status.slices) == 4 and all(s.batches == 1 for s in status.slices)
    yard.pause_iterator("p")
    clock.advance(10)
    yard.run_worker(wait=False)
    paused = yard.get_iterator_status("p")
    assert paused.status == "paused" and paused.processed == 200  # no slice moved
    yard.resume_iterator("p")
    yard.run_worker(wait=False)
    assert [s.batches for s in yard.get_iterator_status("p").slices] == [2, 2, 2, 2]
    yard.cancel_iterator("p")
    clock.advance(10)
    yard.run_worker(wait=False)
    cancelled = yard.get_iterator_status("p")
    assert cancelled.status == "cancelled" and cancelled.processed == 400
    with pytest.raises(Conflict):
        yard.resume_iterator("p")
    yard.delete_iterator_job("p")
    assert yard.list_iterator_jobs() == []


def test_a_failing_slice_fails_the_job_and_resume_retries_every_slice(yard, clock):
    start(yard, max_retries=0)
    yard.fail["n"] = 1
    yard.run_worker(wait=False)
    failed = yard.get_iterator_status("p")
    assert failed.status == "failed" and "sink refused" in failed.last_error
    yard.resume_iterator("p")
    yard.run_worker(wait=False)
    done = yard.get_iterator_status("p")
    assert done.status == "completed" and done.processed == ROWS
    assert set(delivered(yard)) == set(range(ROWS))  # at least once


def test_an_empty_source_completes_at_once(yard):
    with yard.store.transaction() as tx:
        tx.execute("DELETE FROM par_src")
    start(yard)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("p")
    assert status.status == "completed" and status.total == 0 and status.slices == ()
