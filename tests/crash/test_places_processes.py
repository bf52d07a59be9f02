"""Places kept across calls, across worker processes, on both stores: a handler limited to 2
calls at once (no rate limit), so that each slot holding a place claims the next flush for
it ahead while its call runs, starts it as soon as the call returns and writes the end of
the one before behind it. Two workers of eight threads never run more than 2 calls at once
and deliver every batch once; a worker killed while it holds flushes claimed ahead leaves
them, and its places, to its leases: the next worker delivers them once those end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchyard.store import open_store
from tests.processes import store_count
from tests.servers import wait_until

APP = Path(__file__).with_name("places_app.py")
sys.path.insert(0, str(APP.parent))
import places_app  # noqa: E402

BATCHES = 60
WORKERS = "SELECT count(*) AS n FROM batchyard_workers"


def worker(store_url, record, mode="work", *lease):
    return subprocess.Popen(
        [sys.executable, str(APP), mode, store_url, str(record), *lease],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def completed(store):
    return store_count(
        store, "SELECT count(*) AS n FROM batchyard_batches WHERE status = 'completed'"
    )


def most_at_once(calls):
    """The most calls in flight at once (an end before a start at a tie)."""
    events = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def stop(procs):
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output


@pytest.mark.slow
def test_two_workers_keep_the_limit_with_places_kept_across_calls(store_url, tmp_path):
    store = open_store(store_url)  # migrated before anyone starts
    record = tmp_path / "calls.jsonl"
    workers = [worker(store_url, record) for _ in range(2)]
    try:
        wait_until(lambda: store_count(store, WORKERS) == 2, what="the workers", timeout=120)
        wait_until(
            lambda: store_count(store, "SELECT count(*) AS n FROM batchyard_handler_limits") == 1,
            what="the limits",
            timeout=120,
        )
        yard = places_app.app(store_url, str(record))
        yard.add_items("ev", list(range(BATCHES)), max_batch_size=1, on_flush="limited")
        wait_until(lambda: completed(store) == BATCHES, what="every batch", timeout=120)
        yard.close()
    finally:
        stop(workers)
        store.close()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(c["sequence"] for c in calls) == list(range(BATCHES))  # each once
    assert most_at_once(calls) == places_app.CONCURRENCY
    # the places were kept: flushes were held claimed ahead, at most one for each place
    assert max(c["ahead"] for c in calls) in (1, 2)


@pytest.mark.slow
def test_flushes_claimed_ahead_by_a_killed_worker_are_delivered_once_its_leases_end(
    store_url, tmp_path
):
    store = open_store(store_url)
    record = tmp_path / "calls.jsonl"
    dying = worker(store_url, record, "hold", "2")  # a lease of 2 s
    try:
        wait_until(
            lambda: store_count(store, "SELECT count(*) AS n FROM batchyard_handler_limits") == 1,
            what="the limits",
            timeout=120,
        )
        yard = places_app.app(store_url, str(record))
        yard.add_items("ev", list(range(8)), max_batch_size=1, on_flush="limited")
        # both places run a call that never returns, each with the next claimed ahead
        wait_until(
            lambda: store_count(store, places_app.AHEAD) == 2,
            what="the flushes claimed ahead",
            timeout=120,
        )
        with store.transaction(write=False) as tx:
            leases = tx.all(
                "SELECT key, state, due_at FROM batchyard_tasks WHERE worker_id IS NOT NULL"
            )
        dying.send_signal(signal.SIGKILL)
        dying.communicate(timeout=60)
        ahead = sorted(r["key"] for r in leases if r["state"] == "queued")
        running = sorted(r["key"] for r in leases if r["state"] == "running")
        assert len(ahead) == 2 and len(running) == 2
        killed = [json.loads(line) for line in record.read_text().splitlines()]
        assert sorted(f"flush:ev::{c['sequence']}" for c in killed) == running
        successor = worker(store_url, record)
        try:
            wait_until(lambda: completed(store) == 8, what="every batch", timeout=120)
        finally:
            stop([successor])
        yard.close()
    finally:
        if dying.poll() is None:
            dying.kill()
        store.close()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    delivered = [c for c in calls if "end" in c]
    assert sorted(c["sequence"] for c in delivered) == list(range(8))  # each once after
    assert most_at_once(delivered) == places_app.CONCURRENCY
    # nothing ran before a lease of the killed worker ended: its places stayed held till then
    assert min(c["start"] for c in delivered) >= min(r["due_at"] for r in leases) - 0.01
