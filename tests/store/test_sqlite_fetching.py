"""SQLite's locks of a process (its one fetch at a time, `SQLiteStore.fetching`, and its
writers' turn) across fork(): what they must not break."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from batchyard.store import open_store


@pytest.mark.parametrize("lock", ["fetching", "_writer"])
def test_a_forked_child_reads_and_writes_while_a_lock_of_the_parent_is_held(tmp_path, lock):
    # a lock another thread held at fork() would never be released in the child, where
    # that thread does not exist: the child's every read of rows, or every write, would hang
    store = open_store(f"sqlite:///{tmp_path / 'fetch.db'}")
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (n INTEGER)")
        tx.execute("INSERT INTO t VALUES (1), (2)")
    held, done = threading.Event(), threading.Event()

    def holder() -> None:  # another thread of the parent, reading a page or writing
        with getattr(store, lock):
            held.set()
            done.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: exits 0 once its read and write went through, 3 if hung
        signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
        signal.alarm(5)
        with store.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (3)")
        with store.transaction(write=False) as tx:
            rows = tx.all("SELECT n FROM t ORDER BY n")
        os._exit(0 if [tuple(r) for r in rows] == [(1,), (2,), (3,)] else 4)
    _, status = os.waitpid(pid, 0)
    done.set()
    thread.join()
    store.close()
    assert os.waitstatus_to_exitcode(status) == 0
