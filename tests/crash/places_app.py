"""A worker process for the places tests.

    python places_app.py work URL RECORD_PATH
    python places_app.py hold URL RECORD_PATH LEASE

The handler "limited" (at most 2 calls at once, no rate limit: its places are kept across
calls) takes 20 ms and records each call as one JSON line in one atomic append to
RECORD_PATH, shared by every worker process: the batch's sequence, its start and end on
this host's clock, the pid, and how many flushes were held claimed ahead for a place when it
started. In `hold` mode (a worker with a lease of LEASE seconds) a call records its start
and never returns: the process is killed during it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from batchyard import Yard

CONCURRENCY = 2
HANDLER_SECONDS = 0.02
AHEAD = "SELECT count(*) AS n FROM batchyard_tasks WHERE state = 'queued' AND worker_id IS NOT NULL"


def app(url: str, record_path: str, hold: bool = False) -> Yard:
    yard = Yard(url)
    record = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    @yard.handler("limited", concurrency=CONCURRENCY)
    def limited(items: list, ctx) -> None:
        start = time.time()
        with yard.store.transaction(write=False) as tx:
            ahead = tx.one(AHEAD)["n"]
        line = {"sequence": ctx.sequence, "start": start, "pid": os.getpid(), "ahead": ahead}
        if hold:
            os.write(record, (json.dumps(line) + "\n").encode())
            while True:
                time.sleep(60)
        time.sleep(HANDLER_SECONDS)
        line["end"] = time.time()
        os.write(record, (json.dumps(line) + "\n").encode())

    return yard


if __name__ == "__main__":
    mode, url, record_path, *lease = sys.argv[1:]
    yard = app(url, record_path, hold=mode == "hold")
    yard.run_worker(concurrency=8, poll_interval=0.05, lease=float(lease[0]) if lease else 30.0)
