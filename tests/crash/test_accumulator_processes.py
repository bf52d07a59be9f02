"""Producers and workers in real processes, on both stores: concurrency, then SIGKILL.

Afterwards every item was delivered at least once, each is recorded in exactly one completed
flush, no handler call held more than the batch size, nothing is pending, and nothing stayed
claimed past one lease.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchyard.store import open_store
from tests.processes import store_count
from tests.servers import wait_until

APP = Path(__file__).with_name("accumulator_app.py")
MAX_BATCH_SIZE = 100


def spawn(*args):
    return subprocess.Popen(
        [sys.executable, str(APP), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def counts(store):
    with store.transaction() as tx:
        return tx.one(
            "SELECT (SELECT count(*) FROM batchyard_batches WHERE status <> 'completed') AS open,"
            " (SELECT count(*) FROM batchyard_tasks WHERE kind = 'accumulator.flush') AS tasks,"
            " (SELECT count(*) FROM batchyard_items) AS items"
        )


def flush_leftovers(store_url):
    """Producers are done: close the partly filled batches so they flush too."""
    from batchyard import Yard

    yard = Yard(store_url)
    yard.handler("log")(lambda items, ctx: None)
    for base in {b.base_id for b in yard.list_batches("accumulating", limit=1000)}:
        yard.flush(base)
    yard.close()


def wait_started(store, workers, deadline_s=60):
    """Until `workers` worker processes have registered (they run, signal handlers set)."""
    wait_until(
        lambda: store_count(store, "SELECT count(*) AS n FROM batchyard_workers") >= workers,
        timeout=deadline_s,
        what="the workers to start",
    )


def wait_drained(store, total, deadline_s, also=lambda: None):
    deadline = time.monotonic() + deadline_s
    while True:
        also()
        row = counts(store)
        if row["items"] == total and row["open"] == 0 and row["tasks"] == 0:
            return
        assert time.monotonic() < deadline, f"not drained: {dict(row)}"
        time.sleep(0.1)


def stopped(worker, within=120):
    """Wait for a worker sent SIGTERM to exit cleanly. One that does not is asked for its
    threads' stacks (faulthandler, in the app), killed, and the test fails with them. (Once,
    on a loaded machine, a SQLite worker took more than 60 s; 120 s stays far above the
    30 s its in-flight work may take, and a hang still fails.)"""
    try:
        output, _ = worker.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGUSR1)
        time.sleep(1)
        worker.kill()
        output, _ = worker.communicate()
        pytest.fail(f"a worker did not stop within {within} s of SIGTERM:\n{output[-8000:]}")
    assert worker.returncode == 0, output


def check_books(store, log_dir, expected):
    """At-least-once from the handlers' logs; exactly-once in the store's books."""
    deliveries = []
    for log in Path(log_dir).glob("worker-*.jsonl"):
        deliveries += [json.loads(line) for line in log.read_text().splitlines()]
    assert all(len(d["items"]) <= MAX_BATCH_SIZE for d in deliveries)
    delivered = {(i["p"], i["n"]) for d in deliveries for i in d["items"]}
    assert delivered == expected, "an item was never delivered"

    with store.transaction() as tx:
        items = tx.all(
            "SELECT b.batch_id, i.payload, b.status AS batch_status "
            "FROM batchyard_items i JOIN batchyard_batches b "
            "ON b.batch_no = i.batch_no"
        )
        flushes = tx.all(
            "SELECT batch_id, item_count FROM batchyard_flushes WHERE outcome = 'completed'"
        )
        running = tx.one("SELECT count(*) AS n FROM batchyard_tasks WHERE state = 'running'")["n"]
    recorded = [tuple(json.loads(r["payload"]).values()) for r in items]
    assert len(recorded) == len(set(recorded)), "an item is in two batches"
    assert set(recorded) == expected
    assert all(r["batch_status"] == "completed" for r in items)
    assert len(flushes) == len({f["batch_id"] for f in flushes}), "two completed flushes"
    assert sum(f["item_count"] for f in flushes) == len(expected)
    assert running == 0


@pytest.mark.slow
def test_concurrent_producers_and_workers(store_url, tmp_path):
    producers, calls, bases = 8, 2_500, 4
    store = open_store(store_url)  # migrated before anyone starts
    workers = [spawn("work", store_url, tmp_path, 30, 0) for _ in range(2)]
    try:
        wait_started(store, len(workers))  # a SIGTERM before its handler would kill it
        running = [spawn("produce", store_url, p, calls, bases) for p in range(producers)]
        for proc in running:
            output, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, output  # no "database is locked", no error at all
        flush_leftovers(store_url)
        wait_drained(store, producers * calls, deadline_s=120)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            stopped(proc)
    check_books(store, tmp_path, {(p, n) for p in range(producers) for n in range(calls)})
    store.close()


@pytest.mark.slow
def test_sigkill_workers_during_flushes(store_url, tmp_path):
    producers, calls, bases, lease = 4, 1_000, 4, 2.0
    rng = random.Random()
    store = open_store(store_url)
    running = [spawn("produce", store_url, p, calls, bases) for p in range(producers)]
    killed: list[tuple[int, float]] = []

    def nothing_held_past_a_lease():
        host = socket.gethostname()
        with store.transaction() as tx:
            held = tx.all("SELECT worker_id FROM batchyard_tasks WHERE state = 'running'")
        now = time.monotonic()
        for pid, when in killed:
            if now > when + lease + 5:
                stale = [r for r in held if r["worker_id"].startswith(f"{host}:{pid}:")]
                assert not stale, f"worker {pid} was killed but still holds {len(stale)} tasks"

    worker = spawn("work", store_url, tmp_path, lease, 0.2)
    for _ in range(6):
        time.sleep(rng.uniform(0.3, 1.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed.append((worker.pid, time.monotonic()))
        worker.stdout.close()
        worker = spawn("work", store_url, tmp_path, lease, 0.2)
        nothing_held_past_a_lease()
    try:
        for proc in running:
            output, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, output
        flush_leftovers(store_url)
        wait_drained(store, producers * calls, deadline_s=120, also=nothing_held_past_a_lease)
    finally:
        worker.send_signal(signal.SIGTERM)
        stopped(worker)
    check_books(store, tmp_path, {(p, n) for p in range(producers) for n in range(calls)})
    store.close()
