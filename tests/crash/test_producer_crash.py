"""SIGKILL a producer's process at random moments: whatever `flush` reported durable is in
the store, exactly once. Items added after the last durable checkpoint may be missing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchyard.store import open_store

CHILD = Path(__file__).with_name("producer_child.py")


@pytest.mark.slow
def test_durable_items_survive_sigkill(store_url, tmp_path):
    rng = random.Random()
    for run in range(3):
        offset = run * 10_000_000
        report = tmp_path / f"durable-{run}.txt"
        child = subprocess.Popen([sys.executable, str(CHILD), store_url, str(report), str(offset)])
        deadline = time.monotonic() + 60
        while not report.exists() or len(report.read_text().split()) < 2:
            assert child.poll() is None, "the producer died on its own"
            assert time.monotonic() < deadline, "the producer made no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        durable = int(report.read_text().split()[-1])

        store = open_store(store_url)
        with store.transaction() as tx:
            rows = tx.all("SELECT payload FROM batchyard_items")
        store.close()
        values = [int(r["payload"]) for r in rows if int(r["payload"]) >= offset]
        assert len(values) == len(set(values)), "an item was written twice"
        missing = set(range(offset, durable)) - set(values)
        assert not missing, f"{len(missing)} items reported durable are gone"
