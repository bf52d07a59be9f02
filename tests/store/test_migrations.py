"""Upgrading a store that holds data: what was there before a migration is there after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from batchyard import Yard
from batchyard.store import open_store
from tests.conftest import BACKENDS, pg_admin, pg_url


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A store with no schema at all, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/blank.db"
        return
    request.getfixturevalue("pg_template")  # skips (or fails in CI) with no server
    name = f"batchyard_m_{uuid.uuid4().hex[:12]}"
    pg_admin(f"CREATE DATABASE {name}")
    yield pg_url(name)
    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrate_to(url: str, version: int) -> None:
    store = open_store(url, migrate=False)
    with store.transaction() as tx:
        tx.execute(
            "CREATE TABLE batchyard_schema (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for migration in store.migrations():
            if migration.version <= version:
                store._run_script(tx, migration.sql)
                tx.execute(
                    "INSERT INTO batchyard_schema VALUES (:v, :n, 0)",
                    {"v": migration.version, "n": migration.name},
                )
    store.close()


def test_batches_items_and_failures_keep_their_books_across_batch_numbers(blank_url):
    # Schema 6 keyed items by the batch's text id; 7 keys them by the batch's number.
    migrate_to(blank_url, 6)
    old = open_store(blank_url, migrate=False)
    with old.transaction() as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id, next_sequence) VALUES ('ev', 2)")
        for sequence, status in ((0, "flushing"), (1, "accumulating")):
            tx.execute(
                "INSERT INTO batchyard_batches (batch_id, base_id, sequence, status, handler, "
                "max_batch_size, max_attempts, attempts, idempotency_key, created_at, "
                "updated_at) VALUES (:id, 'ev', :seq, :status, 'collect', 4, 1, 1, :id, "
                ":seq, :seq)",
                {"id": f"ev::{sequence}", "seq": sequence, "status": status},
            )
        for batch, values in (("ev::0", [10, 11, 12, 13]), ("ev::1", [20, 21, 22])):
            for position, value in enumerate(values):
                tx.execute(
                    "INSERT INTO batchyard_items (batch_id, position, payload, added_at) "
                    "VALUES (:b, :p, :v, 0)",
                    {"b": batch, "p": position, "v": str(value)},
                )
        for position in (1, 3):  # a partial flush left two items of ev::0 to retry
            tx.execute(
                "INSERT INTO batchyard_item_failures (batch_id, position, error) "
                "VALUES ('ev::0', :p, 'boom')",
                {"p": position},
            )
        # the flush task, as schema 6 held it (the queue of today writes later columns)
        tx.execute(
            "INSERT INTO batchyard_tasks (kind, key, payload, state, due_at, max_attempts, "
            "created_at, updated_at) VALUES ('accumulator.flush', 'flush:ev::0', "
            """'{"batch_id": "ev::0"}', 'queued', 0, 5, 0, 0)"""
        )
    old.close()

    yard = Yard(blank_url)  # migrates on open
    assert yard.store.schema_version() == yard.store.latest_version()
    delivered = []
    yard.handler("collect")(lambda items, ctx: delivered.append((ctx.batch_id, items)))
    status = {
        b.batch_id: (b.status, b.item_count, b.pending_count) for b in yard.get_batch_status("ev")
    }
    assert status == {"ev::0": ("flushing", 4, 2), "ev::1": ("accumulating", 3, 3)}
    yard.add_items("ev", [23], max_batch_size=4, on_flush="collect")  # fills ev::1
    yard.add_items("ev", [30], max_batch_size=4, on_flush="collect")  # opens ev::2
    yard.run_worker(wait=False)
    assert sorted(delivered) == [("ev::0", [11, 13]), ("ev::1", [20, 21, 22, 23])]
    [open_batch] = [b for b in yard.get_batch_status("ev") if b.status == "accumulating"]
    assert (open_batch.batch_id, open_batch.item_count) == ("ev::2", 1)
    yard.close()


def test_batches_and_flush_history_survive_the_discard_and_traceback_schema(blank_url):
    # Schema 9 rebuilds SQLite's batches and flushes tables (new CHECKs, a traceback column).
    migrate_to(blank_url, 8)
    store = open_store(blank_url, migrate=False)
    with store.transaction() as tx:
        for sequence in (0, 1, 2):
            tx.execute(
                "INSERT INTO batchyard_batches (batch_id, base_id, sequence, status, handler, "
                "max_batch_size, max_attempts, attempts, idempotency_key, created_at, "
                "updated_at) VALUES (:id, 'ev', :seq, 'dead', 'collect', 4, 1, 1, :id, 0, 0)",
                {"id": f"ev::{sequence}", "seq": sequence},
            )
        tx.execute(
            "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
            "SELECT batch_no, 0, '[1]', 0 FROM batchyard_batches WHERE sequence = 0"
        )
        tx.execute(
            "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, "
            "reason, outcome, item_count, failed_count, error, started_at, duration) "
            "VALUES ('ev::0', 'ev', 0, 1, 'size', 'failed', 1, 1, 'boom', 0, 0.5)"
        )
        highest = tx.one("SELECT MAX(batch_no) AS n FROM batchyard_batches")["n"]
        tx.execute("DELETE FROM batchyard_batches WHERE sequence = 2")  # pruned, say
    store.close()

    yard = Yard(blank_url)  # migrates on open
    [record] = yard.get_flush_history("ev")
    assert (record.outcome, record.error, record.traceback) == ("failed", "boom", None)
    assert [i.payload for i in yard.get_batch_items("ev::0")] == [[1]]
    assert yard.discard_batch("ev::0").item_count == 1
    yard.handler("collect")(lambda items, ctx: None)
    yard.add_items("fresh", [1], max_batch_size=4, on_flush="collect")
    with yard.store.transaction() as tx:
        # a pruned batch's number is never given again: a process may still remember it
        assert (
            tx.one("SELECT batch_no FROM batchyard_batches WHERE base_id = 'fresh'")["batch_no"]
            > highest
        )
    yard.close()


def test_a_migration_numbered_below_the_stores_newest_still_runs(blank_url):
    # a store migrated before a feature with a lower number landed (features merge out of
    # order; 0017, byte limits, came after 0018 and 0019): every migration but that one
    store = open_store(blank_url, migrate=False)
    versions = [m.version for m in store.migrations()]
    store.close()
    missing = 17
    migrate_to(blank_url, missing - 1)
    store = open_store(blank_url, migrate=False)
    with store.transaction() as tx:
        for migration in store.migrations():
            if migration.version > missing:
                store._run_script(tx, migration.sql)
                tx.execute(
                    "INSERT INTO batchyard_schema VALUES (:v, :n, 0)",
                    {"v": migration.version, "n": migration.name},
                )
    store.close()

    yard = Yard(blank_url)  # migrates on open
    with yard.store.transaction(write=False) as tx:
        applied = [row["version"] for row in tx.all("SELECT version FROM batchyard_schema")]
    assert sorted(applied) == versions
    yard.close()
