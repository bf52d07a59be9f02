"""A `batchyard worker` process on SQLite lives through a full disk: while no write fits, its
claims fail and it waits with backoff, saying so once; once space is freed it flushes what
was accepted before and what is added after. Nothing accepted is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchyard import StoreFull, Yard
from tests.faults.disks import grow, small_disk
from tests.processes import app_env, recorded
from tests.servers import wait_until

HERE = Path(__file__).parent
DISK_KB = 768
FULL_SECONDS = 3.0


def flushed(record: Path) -> list[str]:
    return [call["batch_id"] for call in recorded(record)]


def fill(yard: Yard) -> None:
    """Add until not even a small add fits (large ones first, then ever smaller: the
    write-ahead log keeps room for small writes after a large one no longer fits)."""
    for size, count in ((4000, 20), (4000, 1), (10, 1)):
        with pytest.raises(StoreFull):
            for _ in range(10_000):
                yard.add_items(
                    "ballast",
                    ["x" * size] * count,
                    max_batch_size=1_000_000,
                    on_flush="record",
                    flush_interval=3600,
                )


def test_a_worker_process_rides_through_a_full_disk(tmp_path):
    record, log = tmp_path / "calls.jsonl", tmp_path / "worker.log"
    with small_disk(tmp_path / "disk", DISK_KB) as disk:
        url = f"sqlite:///{disk / 'yard.db'}"
        yard = Yard(url)
        yard.handler("record")(lambda items, ctx: None)
        env = app_env(url, record, HERE)
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "batchyard",
                    "worker",
                    "--app",
                    "app:yard",
                    "--concurrency",
                    "2",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yard.add_items("before", [1], max_batch_size=1, on_flush="record")
            wait_until(lambda: "before::0" in flushed(record), 60, "the first flush")
            fill(yard)
            # room for one more add, due in a second: the worker's claim of it meets the
            # disk full again
            grow(disk, DISK_KB + 128)
            yard.add_items("timed", [2], max_batch_size=10, flush_interval=1, on_flush="record")
            fill(yard)
            time.sleep(FULL_SECONDS)
            assert worker.poll() is None, log.read_text()
            assert "timed::0" not in flushed(record)

            grow(disk, DISK_KB * 8)  # an operator frees space
            yard.add_items("after", [3], max_batch_size=1, on_flush="record")
            wait_until(
                lambda: {"timed::0", "after::0"} <= set(flushed(record)),
                30,
                "the flushes once space was freed",
            )
            assert worker.poll() is None, log.read_text()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
            yard.close()
    text = log.read_text()
    assert worker.returncode == 0, text
    assert "Traceback" not in text, text
    assert text.count("the store is unavailable") == 1, text
    assert text.count("working again after") == 1, text
