"""PostgreSQL's pipelined transactions and psycopg's cache of prepared statements."""

from __future__ import annotations

import pytest

from batchyard.errors import StoreError
from batchyard.store.postgres import PostgresStore

READ = "SELECT COUNT(*) AS n FROM batchyard_batch_bases WHERE base_id <> :x"


def test_a_statement_first_prepared_in_a_failed_pipeline_still_runs_afterwards(pg_database):
    # psycopg prepares a statement on its sixth run. In a pipeline that a failed statement
    # aborted, the server skips that statement - its Parse too - yet psycopg records it as
    # prepared: every later run of it on that connection would fail with "prepared
    # statement does not exist", for as long as the connection lives.
    store = PostgresStore(pg_database, min_size=1, max_size=1)  # one connection: the same
    try:
        for _ in range(5):
            with store.transaction(write=False) as tx:
                tx.one(READ, {"x": "a"})
        with pytest.raises(StoreError), store.transaction(pipeline=True) as tx:
            tx.execute("SELECT CAST('not a number' AS INTEGER)")  # fails on the server
            tx.later(READ, {"x": "a"})  # its sixth run, skipped by the server
        reads_run(store)
    finally:
        store.close()


def test_statements_prepared_before_failed_pipelines_still_run_after_them(pg_database):
    # A first failure while nothing is prepared, a second once a statement is. psycopg
    # forgets its prepared statements on a DEALLOCATE ALL only while that command is new to
    # it: such a cure, tried before, left the server without them after the second failure
    # and psycopg with their names - every run of one failed from then on.
    store = PostgresStore(pg_database, min_size=1, max_size=1)
    try:
        fail_a_pipeline(store)
        for _ in range(6):  # prepared on its sixth run
            with store.transaction(write=False) as tx:
                tx.one(READ, {"x": "a"})
        fail_a_pipeline(store)
        reads_run(store)
    finally:
        store.close()


def fail_a_pipeline(store: PostgresStore) -> None:
    with pytest.raises(StoreError), store.transaction(pipeline=True) as tx:
        tx.execute("SELECT CAST('not a number' AS INTEGER)")  # fails on the server


def reads_run(store: PostgresStore) -> None:
    """The read runs, alone and pipelined, a few times over (prepared by then)."""
    for _ in range(3):
        with store.transaction(write=False) as tx:
            assert tx.one(READ, {"x": "a"})["n"] == 0
        with store.transaction(pipeline=True) as tx:
            counted = tx.later(READ, {"x": "a"})
        assert counted.all()[0]["n"] == 0
