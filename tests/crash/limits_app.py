"""A worker process for the handler-limits tests.

    python limits_app.py work URL RECORD_PATH

The handler "limited" (at most 2 calls at once, 10 starts a second) records each call as
one JSON line - the batch's sequence, its start and end on this host's clock, the pid - in
one atomic append to RECORD_PATH, shared by every worker process.
"""

from __future__ import annotations

import json
import os
import sys
import time

from batchyard import Yard

CONCURRENCY, RATE = 2, (10, 1.0)
HANDLER_SECONDS = 0.02


def app(url: str, record_path: str | None = None) -> Yard:
    yard = Yard(url)
    record = (
        None
        if record_path is None
        else os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    )

    @yard.handler("limited", concurrency=CONCURRENCY, rate=RATE)
    def limited(items: list, ctx) -> None:
        start = time.time()
        time.sleep(HANDLER_SECONDS)
        line = {"sequence": ctx.sequence, "start": start, "end": time.time(), "pid": os.getpid()}
        assert record is not None
        os.write(record, (json.dumps(line) + "\n").encode())

    return yard


if __name__ == "__main__":
    mode, url, record_path = sys.argv[1:]
    app(url, record_path).run_worker(concurrency=8, poll_interval=0.05)
