"""SQLite's one fetch at a time in a process (`SQLiteStore.fetching`): what it must not break."""

from __future__ import annotations

import os
import signal

from batchyard.store import open_store


def test_a_forked_child_reads_while_the_parents_fetch_lock_is_held(tmp_path):
    # the lock another thread held at fork() would never be released in the child, where
    # that thread does not exist: the child's every read of rows would hang
    store = open_store(f"sqlite:///{tmp_path / 'fetch.db'}")
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (n INTEGER)")
        tx.execute("INSERT INTO t VALUES (1), (2)")
    with store.fetching:  # as a thread reading a page holds it
        pid = os.fork()
        if pid == 0:  # the child: exits 0 once its read went through, 3 if it hung
            signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
            signal.alarm(5)
            with store.transaction(write=False) as tx:
                rows = tx.all("SELECT n FROM t ORDER BY n")
            os._exit(0 if [tuple(r) for r in rows] == [(1,), (2,)] else 4)
        _, status = os.waitpid(pid, 0)
    store.close()
    assert os.waitstatus_to_exitcode(status) == 0
