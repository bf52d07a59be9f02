"""The raw limit of each store for durable adds: the same rows inserted with plain sqlite3 or
psycopg, one transaction per call, with the same durability settings as batchyard's default
(SQLite WAL + synchronous=NORMAL; PostgreSQL synchronous_commit=on).

Two shapes of table: ``keyed=False`` (the original baseline) is a heap of (batch_id, payload)
with no index at all; ``keyed=True`` has the columns and the primary key of batchyard_items,
(batch_no, position) - WITHOUT ROWID on SQLite, as there - so it pays for the same index.

Each returns (rows, seconds): the JSON encoding of the rows and their inserts are timed (an
add encodes its items too); connecting and creating the table are set-up, as opening the
yard (and its migrations) is for batchyard's side."""

from __future__ import annotations

import json
import sqlite3
import time

import psycopg

TABLE = "CREATE TABLE IF NOT EXISTS raw_items (batch_id TEXT NOT NULL, payload TEXT NOT NULL)"
KEYED_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_items (batch_no BIGINT NOT NULL, position "
    "INTEGER NOT NULL, payload TEXT NOT NULL, added_at REAL NOT NULL, "
    "PRIMARY KEY (batch_no, position))"
)


def rows(calls: int, per_call: int, keyed: bool = False, first: int = 0) -> list[list[tuple]]:
    def row(n: int) -> tuple:
        n += first
        payload = json.dumps({"i": n, "payload": "x" * 40})
        # keyed: batches of 100 positions, like max_batch_size=100 in the benchmarks
        return (n // 100, n % 100, payload, 0.0) if keyed else ("bench", payload)

    return [[row(c * per_call + k) for k in range(per_call)] for c in range(calls)]


def raw_sqlite_inserts(
    path: str, calls: int, per_call: int, synchronous: str = "NORMAL", keyed: bool = False
) -> tuple[int, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(KEYED_TABLE + " WITHOUT ROWID" if keyed else TABLE)
    insert = f"INSERT INTO raw_items VALUES ({', '.join('?' * (4 if keyed else 2))})"
    start = time.perf_counter()
    for call in rows(calls, per_call, keyed):
        conn.execute("BEGIN IMMEDIATE")
        if len(call) == 1:
            conn.execute(insert, call[0])
        else:
            conn.executemany(insert, call)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return calls * per_call, elapsed


def raw_postgres_inserts(
    url: str, calls: int, per_call: int, keyed: bool = False
) -> tuple[int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(KEYED_TABLE if keyed else TABLE)
        start = time.perf_counter()
        postgres_insert_calls(conn, calls, per_call, keyed)
        elapsed = time.perf_counter() - start
    return calls * per_call, elapsed


def postgres_insert_calls(
    conn: psycopg.Connection, calls: int, per_call: int, keyed: bool = False, first: int = 0
) -> None:
    """`calls` transactions of `per_call` rows each into an existing raw_items table, rows
    numbered from `first` (so that threads sharing a keyed table do not collide)."""
    insert = f"INSERT INTO raw_items VALUES ({', '.join(['%s'] * (4 if keyed else 2))})"
    with conn.cursor() as cur:
        for call in rows(calls, per_call, keyed, first):
            with conn.transaction():
                if len(call) == 1:
                    cur.execute(insert, call[0])
                else:
                    cur.executemany(insert, call)
