"""A handler's limits hold across worker processes, on both stores: two workers of eight
threads each share a handler limited to 2 calls at once and 10 starts a second."""

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

APP = Path(__file__).with_name("limits_app.py")
sys.path.insert(0, str(APP.parent))
import limits_app  # noqa: E402

BATCHES = 40
# The sink's clock is read when the handler starts, a little after the claim that the rate
# is kept by (on PostgreSQL, in the database's time): a start may come late by the time a
# worker thread takes to begin the flush. The check allows that much, and no more: starts
# are counted in every window of a second less this slack (unlimited, all 40 would start
# within a fraction of a second).
SLACK_SECONDS = 0.25


@pytest.mark.slow
def test_limits_hold_across_worker_processes(store_url, tmp_path):
    store = open_store(store_url)  # migrated before anyone starts
    record = tmp_path / "calls.jsonl"
    workers = [
        subprocess.Popen(
            [sys.executable, str(APP), "work", store_url, str(record)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_until(
            lambda: store_count(store, "SELECT count(*) AS n FROM batchyard_workers") == 2,
            what="the workers",
            timeout=120,
        )
        wait_until(
            lambda: store_count(store, "SELECT count(*) AS n FROM batchyard_handler_limits") == 1,
            what="the limits",
            timeout=120,
        )
        yard = limits_app.app(store_url)
        yard.add_items("ev", list(range(BATCHES)), max_batch_size=1, on_flush="limited")
        wait_until(
            lambda: (
                store_count(
                    store, "SELECT count(*) AS n FROM batchyard_batches WHERE status = 'completed'"
                )
                == BATCHES
            ),
            what="every batch",
            timeout=120,
        )
        yard.close()
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            output, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, output
        store.close()

    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(c["sequence"] for c in calls) == list(range(BATCHES))  # each once
    # never more than 2 at once: sweep the starts and ends (an end before a start at a tie)
    events = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == limits_app.CONCURRENCY
    starts = sorted(c["start"] for c in calls)
    count_, per = limits_app.RATE
    busiest = max(
        sum(1 for later in starts[i:] if later - first < per - SLACK_SECONDS)
        for i, first in enumerate(starts)
    )
    assert busiest <= count_, f"{busiest} starts within {per - SLACK_SECONDS} s"
