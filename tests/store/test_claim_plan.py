"""The claim must stay an index range scan on a large, half-drained task table, and a directed
claim a look-up of its keys.

A wrong plan costs 5-25x: on PostgreSQL a partial index once made the planner walk the primary
key, and on SQLite ANALYZE once turned the claim into a full scan. We build 60,000 tasks,
drain the half that is due first (as workers would), refresh the statistics and read the plan.
"""

from __future__ import annotations

import json

from batchyard.store import open_store
from batchyard.tasks import TaskQueue
from batchyard.tasks.sql import CLAIM_DIRECTED_SQL, CLAIM_SQL

TASKS = 60_000
NOW = 2_000_000.0


def fill(store, keyed: bool = False) -> None:
    """TASKS due tasks, the earliest first; `keyed`: with keys, as flush tasks have."""
    key = "'flush:b::' || i" if keyed else "NULL"
    with store.transaction(NOW) as tx:
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO batchyard_tasks (kind, key, payload, state, due_at, max_attempts, "
            "created_at, updated_at) "
            f"SELECT 'k', {key}, '{{}}', 'queued', "
            "{now} - :count + i, 5, {now}, {now} FROM n",
            {"count": TASKS},
        )


def fill_and_half_drain(store) -> None:
    fill(store)
    drained, queue = 0, TaskQueue(store)
    while drained < TASKS // 2:  # complete the earliest half, claim by claim
        tasks = queue.claim("w", 1000, lease=30, now=NOW)
        with store.transaction(NOW) as tx:
            for task in tasks:
                queue.complete(tx, task)
        drained += len(tasks)


def sqlite_plan(store, sql, params) -> list[str]:
    """The details of SQLite's plan for `sql` after ANALYZE; the store is closed."""
    with store.transaction(NOW) as tx:
        tx.execute("ANALYZE")
        plan = tx.all("EXPLAIN QUERY PLAN " + sql, params)
    store.close()
    return [row["detail"] for row in plan]


def postgres_plan(store, sql, params) -> dict:
    """PostgreSQL's plan for `sql` after ANALYZE, as run (with its buffers), and undone."""
    with store.transaction(NOW) as tx:
        tx.execute("ANALYZE batchyard_tasks")
    with store.transaction(NOW) as tx:
        [row] = tx.all("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        tx.execute("ROLLBACK")  # EXPLAIN ANALYZE ran the claim: undo it
    plan = row["QUERY PLAN"]
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def test_sqlite_claim_searches_the_due_index(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/plan.db")
    fill_and_half_drain(store)
    details = sqlite_plan(store, CLAIM_SQL, {"limit": 100, "worker_id": "w", "lease": 30})
    assert any("batchyard_tasks_due" in d and "SEARCH" in d for d in details), details
    assert not any(d.startswith("SCAN batchyard_tasks") for d in details), details


def test_postgres_claim_reads_a_bounded_number_of_rows(pg_database):
    store = open_store(pg_database)
    fill_and_half_drain(store)
    plan = postgres_plan(store, CLAIM_SQL, {"limit": 100, "worker_id": "w", "lease": 30})
    with store.transaction(NOW, write=False) as tx:
        table_blocks = tx.one(
            "SELECT pg_total_relation_size('batchyard_tasks') / current_setting('block_size')::int "
            "AS n"
        )["n"]
    store.close()
    scans = list(_nodes(plan))
    task_scans = [
        n
        for n in scans
        if n.get("Relation Name") == "batchyard_tasks"
        and "Scan" in n["Node Type"]
        and n.get("Parent Relationship") != "Member"
    ]
    picked = [n for n in task_scans if n.get("Index Name") == "batchyard_tasks_due"]
    assert picked, [(n["Node Type"], n.get("Index Name")) for n in scans]
    assert not [
        n
        for n in scans
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "batchyard_tasks"
    ]
    for node in picked:
        assert node["Actual Rows"] <= 100
        # a fraction of the table: the due range from its live end, not the drained half.
        # (The scan may still step over the drained half's index entries: it skips them
        # cheaply once an earlier scan marked them dead, which it cannot while another
        # session on the server holds an older snapshot - so no tighter bound holds here.)
        assert node["Shared Hit Blocks"] + node["Shared Read Blocks"] < table_blocks / 2, (
            node,
            table_blocks,
        )


def _nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def fill_keyed(store) -> None:
    """60,000 due flush tasks with keys, as a backlog that a directed claim must not walk."""
    fill(store, keyed=True)


DIRECTED_PARAMS = {
    "values": json.dumps([f"flush:b::{TASKS - 1}", f"flush:b::{TASKS}"]),
    "limit": 2,
    "worker_id": "w",
    "lease": 30,
}


def test_sqlite_directed_claim_searches_the_key_index(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/plan.db")
    fill_keyed(store)
    details = sqlite_plan(store, CLAIM_DIRECTED_SQL, DIRECTED_PARAMS)
    assert any(d.startswith("SEARCH t USING INDEX") and "(key=?)" in d for d in details), details
    assert not any(d.startswith("SCAN t") for d in details), details


def test_postgres_directed_claim_reads_its_tasks_only(pg_database):
    store = open_store(pg_database)
    fill_keyed(store)
    top = postgres_plan(store, CLAIM_DIRECTED_SQL, DIRECTED_PARAMS)
    store.close()
    assert top["Actual Rows"] == 2
    scans = [n for n in _nodes(top) if n.get("Relation Name") == "batchyard_tasks"]
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], scans
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] < 100, top
