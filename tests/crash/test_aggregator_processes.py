"""The aggregator against concurrent writers and SIGKILL, in real processes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from batchyard.store import open_store

APP = Path(__file__).with_name("aggregator_app.py")
sys.path.insert(0, str(APP.parent))
from aggregator_app import make_yard  # noqa: E402


def spawn(*args):
    return subprocess.Popen(
        [sys.executable, str(APP), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def independent_fold(url):
    store = open_store(url)
    with store.transaction() as tx:
        rows = tx.all("SELECT payload FROM batchyard_events WHERE stream = 'events'")
    store.close()
    return Counter(orjson.loads(r["payload"])["k"] for r in rows)


def totals(yard):
    return {key: total["n"] for key, total in yard.get_totals("totals").items()}


@pytest.mark.slow
def test_concurrent_writers_with_late_commits_are_all_counted_once(pg_database):
    """8 writer processes for 20 s with random commit delays while the aggregator runs."""
    yard = make_yard(pg_database)
    writers = [spawn("write", pg_database, w, 20) for w in range(8)]
    runs = 0
    while any(w.poll() is None for w in writers):
        yard.run_aggregator("totals")
        runs += 1
    written = 0
    for w in writers:
        output, _ = w.communicate(timeout=60)
        assert w.returncode == 0, output
        written += int(output.split()[-1])
    yard.run_aggregator("totals")
    expected = independent_fold(pg_database)
    assert sum(expected.values()) == written
    assert totals(yard) == dict(expected)
    assert runs > 10
    yard.close()


@pytest.mark.slow
def test_sigkill_during_runs_keeps_totals_exact(store_url):
    yard = make_yard(store_url)
    rng = random.Random()
    appended = 0
    for _ in range(6):
        runner = spawn("run", store_url)
        for _ in range(rng.randint(3, 8)):
            batch = [{"k": f"k{rng.randrange(20)}", "n": 1} for _ in range(rng.randint(50, 400))]
            yard.append_events("events", batch)
            appended += len(batch)
            time.sleep(rng.uniform(0.0, 0.05))
        time.sleep(rng.uniform(0.0, 0.3))
        runner.send_signal(signal.SIGKILL)
        runner.communicate()
    time.sleep(2.1)  # the killed runner's lease (2 s) runs out
    run = yard.run_aggregator("totals")
    assert not run.skipped and run.caught_up
    assert totals(yard) == dict(independent_fold(store_url))
    assert sum(totals(yard).values()) == appended
    yard.close()
