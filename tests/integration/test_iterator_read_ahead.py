"""A keyset job reads its next page in the transaction that checkpoints the one before, where
writers do not queue on one lock (PostgreSQL): one transaction a page; on SQLite the read
stays a transaction of its own, off the writer's lock - two. A read that fails there does
not take the checkpoint with it."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from batchyard.sources import sql_keyset


def keyed_rows(yard, count, ties=1):
    """A table of `count` rows and the keyset source "src" over it, `ties` rows an order
    value."""
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE rows_src (id INTEGER PRIMARY KEY, at REAL NOT NULL)")
        tx.executemany(
            "INSERT INTO rows_src (id, at) VALUES (:id, :at)",
            [{"id": n, "at": float(n // ties)} for n in range(count)],
        )
    sql_keyset(yard, "src", table="rows_src", order_by="at", tie_breaker="id")


@pytest.fixture
def counted(yard):
    """The yard, its store's transactions counted by the thread that opens them."""
    opened: Counter[int] = Counter()
    store = yard.store
    for name in ("transaction", "snapshot", "one", "all", "execute"):
        real = getattr(store, name)

        def counting(*args, _real=real, **kwargs):
            opened[threading.get_ident()] += 1
            return _real(*args, **kwargs)

        setattr(store, name, counting)
    yard.opened = opened
    return yard


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_page_takes_one_transaction_where_writers_do_not_queue(counted, parallelism):
    yard = counted
    keyed_rows(yard, 400, ties=7)
    between: dict[int | None, list[int]] = {}
    last: dict[int | None, int] = {}
    seen: list[int] = []

    @yard.handler("count")
    def count(items, ctx):
        seen.extend(row["id"] for row in items)
        now = yard.opened[threading.get_ident()]
        if ctx.slice in last:
            between.setdefault(ctx.slice, []).append(now - last[ctx.slice])
        last[ctx.slice] = now

    yard.start_iterator(
        "counted",
        batch_size=10,
        get_next_batch="src",
        process_batch="count",
        delay_between_batches=0,
        parallelism=parallelism,
    )
    yard.run_worker(concurrency=1, wait=False)
    assert sorted(seen) == list(range(400))
    expected = 2 if yard.store.single_writer else 1
    # from one page's handler call to the next's, on the worker's thread: the checkpoint of
    # the one, and the read of the next (a step's first page and a split read on their own)
    pages = [n for numbers in between.values() for n in numbers]
    assert pages.count(expected) >= len(pages) - 2, pages


def test_a_failed_read_of_the_next_page_keeps_the_checkpoint_of_the_page_before(yard):
    keyed_rows(yard, 50)
    seen: list[int] = []

    @yard.handler("take-the-table-away")
    def take_away(items, ctx):
        seen.extend(row["id"] for row in items)
        if ctx.page == 2:  # the read of page 3 finds no table
            with yard.store.transaction() as tx:
                tx.execute("ALTER TABLE rows_src RENAME TO rows_away")

    yard.start_iterator(
        "away",
        batch_size=10,
        get_next_batch="src",
        process_batch="take-the-table-away",
        delay_between_batches=0,
        max_retries=0,
    )
    yard.run_worker(concurrency=1, wait=False)
    status = yard.get_iterator_status("away")
    # the pages before were checkpointed; the failure is page 3's own
    assert (status.status, status.processed, status.batches) == ("failed", 30, 3)
    assert [error.batch for error in yard.get_iterator_errors("away")] == [3]
    with yard.store.transaction() as tx:
        tx.execute("ALTER TABLE rows_away RENAME TO rows_src")
    yard.resume_iterator("away")
    yard.run_worker(concurrency=1, wait=False)
    assert yard.get_iterator_status("away").status == "completed"
    assert seen == list(range(50))  # every row once: none of page 2 again


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_page_of_a_job_paused_while_it_ran_is_dropped_and_its_step_ends(yard, parallelism):
    keyed_rows(yard, 100)
    seen: list[int] = []

    @yard.handler("pause-midway")
    def pause_midway(items, ctx):
        seen.extend(row["id"] for row in items)
        if len(seen) == 30:  # the checkpoint of this page finds the job paused
            yard.pause_iterator("midway")

    yard.start_iterator(
        "midway",
        batch_size=10,
        get_next_batch="src",
        process_batch="pause-midway",
        delay_between_batches=0,
        parallelism=parallelism,
    )
    yard.run_worker(concurrency=1, wait=False)
    status = yard.get_iterator_status("midway")
    assert (status.status, status.processed) == ("paused", 20)  # the third page dropped
    with yard.store.transaction() as tx:  # and no step left to run, nor to retry
        assert tx.one("SELECT COUNT(*) AS n FROM batchyard_tasks")["n"] == 0
    yard.resume_iterator("midway")
    yard.run_worker(concurrency=1, wait=False)
    status = yard.get_iterator_status("midway")
    assert (status.status, status.processed) == ("completed", 100)
    assert sorted(set(seen)) == list(range(100)) and len(seen) == 110  # that page twice
