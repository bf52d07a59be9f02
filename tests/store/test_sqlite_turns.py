"""Processes take turns at a SQLite file's one writer (`batchyard.store.turns`).

Another process writes back to back here, each transaction holding the writer 5 ms (a
transactional iterator's handler, say). SQLite's busy handler alone let a writer of this
process sleep through the gaps between them, 100 ms at a time, for as long as that went on.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

from batchyard.store.sqlite import SQLiteStore

# back to back: each transaction counts itself and holds the writer 5 ms, until told to stop
WRITER = """
import sys, time
from batchyard.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
for _ in range(4000):
    with store.transaction() as tx:
        tx.execute("UPDATE turns SET n = n + 1")
        if tx.one("SELECT stop FROM turns")["stop"]:
            break
        time.sleep(0.005)
"""


def test_a_write_waits_for_at_most_the_transaction_another_process_holds(tmp_path):
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    store = SQLiteStore(url, busy_timeout=10)
    with store.transaction() as tx:
        tx.execute("CREATE TABLE turns (n INTEGER NOT NULL, stop INTEGER NOT NULL)")
        tx.execute("INSERT INTO turns VALUES (0, 0)")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url])
    try:
        while count(store) < 5:  # the other process is writing
            time.sleep(0.01)
        passed = []  # how many of its transactions each write of ours waited through
        for _ in range(20):
            before = count(store)
            with store.transaction() as tx:
                passed.append(tx.one("SELECT n FROM turns")["n"] - before)
            time.sleep(0.01)
        with store.transaction() as tx:
            tx.execute("UPDATE turns SET stop = 1")
        assert writer.wait(timeout=60) == 0
        total = count(store)
    finally:
        writer.kill()
        store.close()
    # the one it held when ours asked (two now and then, when ours asked just before its
    # commit); with SQLite's busy handler alone, dozens each, or the whole busy timeout
    assert sum(passed) <= 2 * len(passed), passed
    assert total > sum(passed)  # it did write all along


def test_the_turns_file_takes_the_database_files_permissions(tmp_path):
    # as SQLite's own -wal and -shm do: a group that may write the database may take turns
    path = tmp_path / "shared.db"
    store = SQLiteStore(f"sqlite:///{path}")
    try:
        with store.transaction(write=False) as tx:
            tx.one("SELECT 1 AS one")  # the file is made, no write yet
        os.chmod(path, 0o660)
        with store.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER)")
    finally:
        store.close()
    assert stat.S_IMODE(os.stat(f"{path}-turns").st_mode) == 0o660


def count(store: SQLiteStore) -> int:
    with store.transaction(write=False) as tx:
        return int(tx.one("SELECT n FROM turns")["n"])
