"""The raw limit of each store for durable adds: the same rows inserted with plain sqlite3 or
psycopg, one transaction per call, with the same durability settings as batchyard's default
(SQLite WAL + synchronous=NORMAL; PostgreSQL synchronous_commit=on)."""

from __future__ import annotations

import json
import sqlite3

import psycopg

TABLE = "CREATE TABLE IF NOT EXISTS raw_items (batch_id TEXT NOT NULL, payload TEXT NOT NULL)"


def rows(calls: int, per_call: int) -> list[list[tuple[str, str]]]:
    return [[("bench", json.dumps({"i": c * per_call + k, "payload": "x" * 40}))
             for k in range(per_call)] for c in range(calls)]


def raw_sqlite_inserts(path: str, calls: int, per_call: int,
                       synchronous: str = "NORMAL") -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(TABLE)
    for call in rows(calls, per_call):
        conn.execute("BEGIN IMMEDIATE")
        if len(call) == 1:
            conn.execute("INSERT INTO raw_items VALUES (?, ?)", call[0])
        else:
            conn.executemany("INSERT INTO raw_items VALUES (?, ?)", call)
        conn.execute("COMMIT")
    conn.close()
    return calls * per_call


def raw_postgres_inserts(url: str, calls: int, per_call: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE)
        with conn.cursor() as cur:
            for call in rows(calls, per_call):
                with conn.transaction():
                    if len(call) == 1:
                        cur.execute("INSERT INTO raw_items VALUES (%s, %s)", call[0])
                    else:
                        cur.executemany("INSERT INTO raw_items VALUES (%s, %s)", call)
    return calls * per_call
