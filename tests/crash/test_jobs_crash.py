"""A bulk import against SIGKILL: the worker dies twice mid-import, a new one finishes it,
and the books are exact - every thing stored once, processed + failed == total."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from batchyard import Yard
from tests.servers import wait_until

ITEMS = 50_000


def worker(store_url):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchyard",
            "worker",
            "--store",
            store_url,
            "--concurrency",
            "2",
            "--lease",
            "2",
        ],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_during_a_50k_import_keeps_exact_books(store_url):
    yard = Yard(store_url)
    items = [{"ns": "crash", "id": f"t{n}", "type": "T", "data": {"n": n}} for n in range(ITEMS)]
    items[123] = {"ns": "crash", "id": ""}  # one invalid item: failed, with its index
    job_id = yard.create_batch_job("import-things", items)
    progress, procs = [], []
    try:
        for fraction in (0.3, 0.6):  # two kills mid-import
            procs.append(proc := worker(store_url))
            wait_until(
                lambda f=fraction: yard.get_batch_job(job_id).processed >= f * ITEMS,
                120.0,
                f"{fraction:.0%} of the import",
                interval=0.01,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            progress.append(yard.get_batch_job(job_id).processed)
        assert progress[-1] < ITEMS - 1, "the import finished before the last kill"

        procs.append(proc := worker(store_url))
        wait_until(
            lambda: yard.get_batch_job(job_id).completed_at is not None,
            120.0,
            "the import's end",
            interval=0.01,
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        for proc in procs:  # a failed wait must not leave a worker behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    job = yard.get_batch_job(job_id)
    assert (job.status, job.total, job.processed, job.failed) == (
        "failed",
        ITEMS,
        ITEMS - 1,
        1,
    )  # "failed": one item is; the rest all landed
    assert [(e.index, e.error) for e in job.errors] == [(123, "id: must not be empty")]
    with yard.store.transaction(write=False) as tx:
        count = tx.one(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM batchyard_things WHERE ns = 'crash'"
        )
        left = tx.one("SELECT COUNT(*) AS n FROM batchyard_tasks")
    assert (count["n"], count["d"]) == (ITEMS - 1, ITEMS - 1)
    assert left["n"] <= 1  # at most the maintenance task
    yard.close()
