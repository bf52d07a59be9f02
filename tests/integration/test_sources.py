"""The keyset SQL source: rows sharing an order value are neither lost nor repeated."""

from __future__ import annotations

import pytest

from batchyard import InvalidInput
from batchyard.sources import sql_keyset


@pytest.fixture
def yard(make_yard):
    yard = make_yard()
    yard.batches = []

    @yard.handler("collect")
    def collect(items, ctx):
        yard.batches.append([row["id"] for row in items])

    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE events_src (id INTEGER PRIMARY KEY, at REAL NOT NULL, "
                   "body TEXT)")
        tx.execute("CREATE INDEX events_src_at ON events_src (at, id)")
    return yard


def fill(yard, at_of):
    with yard.store.transaction() as tx:
        tx.executemany("INSERT INTO events_src (id, at, body) VALUES (:id, :at, 'x')",
                       [{"id": n, "at": at_of(n)} for n in range(1, 10_001)])


def run_job(yard, job):
    sql_keyset(yard, f"src-{job}", table="events_src", order_by="at", tie_breaker="id",
               columns=["id", "body"])
    yard.start_iterator(job, batch_size=100, get_next_batch=f"src-{job}",
                        process_batch="collect", delay_between_batches=0)
    yard.run_worker(wait=False)
    return yard.get_iterator_status(job)


@pytest.mark.parametrize("at_of", [lambda n: 1000.0, lambda n: float(n // 1000)],
                         ids=["one-timestamp", "1000-per-second"])
def test_every_row_once_with_shared_order_values(yard, at_of):
    fill(yard, at_of)
    status = run_job(yard, "j")
    assert status.status == "completed" and status.processed == 10_000
    seen = [i for batch in yard.batches for i in batch]
    assert sorted(seen) == list(range(1, 10_001)) and len(seen) == 10_000
    assert all(len(b) <= 100 for b in yard.batches)
    assert seen == sorted(seen, key=lambda n: (at_of(n), n))  # cursor strictly increasing


def test_the_bound_stops_at_rows_present_at_start(yard):
    fill(yard, lambda n: float(n))

    @yard.handler("collect-and-insert")
    def collect_and_insert(items, ctx):
        yard.batches.append([row["id"] for row in items])
        with yard.store.transaction() as tx:  # rows keep arriving while the job runs
            tx.execute("INSERT INTO events_src (id, at) VALUES (:id, :id)",
                       {"id": 20_000 + ctx.batch})

    sql_keyset(yard, "src", table="events_src", order_by="at", tie_breaker="id")
    yard.start_iterator("b", batch_size=1000, get_next_batch="src",
                        process_batch="collect-and-insert", delay_between_batches=0)
    yard.run_worker(wait=False)
    assert max(i for b in yard.batches for i in b) == 10_000


def test_identifiers_are_checked(yard):
    with pytest.raises(InvalidInput, match="table"):
        sql_keyset(yard, "bad", table="x; DROP TABLE y", order_by="at", tie_breaker="id")
