"""Processes for the multi-process accumulator tests.

    python accumulator_app.py produce URL INDEX CALLS BASES
    python accumulator_app.py work URL LOG_DIR LEASE HANDLER_SLEEP

A producer makes CALLS single-item add_items calls spread over BASES base ids. A worker
flushes until SIGTERM; its handler appends one JSON line per call (batch id, attempt, items)
to its own log, so deliveries can be counted after the worker is killed.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time

from batchyard import Yard

MAX_BATCH_SIZE = 100


def produce(url: str, index: int, calls: int, bases: int) -> None:
    yard = Yard(url)
    yard.handler("log")(lambda items, ctx: None)
    for n in range(calls):
        yard.add_items(
            f"base-{n % bases}",
            [{"p": index, "n": n}],
            max_batch_size=MAX_BATCH_SIZE,
            on_flush="log",
        )
    yard.close()


def work(url: str, log_dir: str, lease: float, sleep: float) -> None:
    # a test that finds this worker slow to stop asks it for its threads' stacks
    faulthandler.register(signal.SIGUSR1)
    yard = Yard(url)
    log = os.open(
        os.path.join(log_dir, f"worker-{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
    )

    @yard.handler("log")
    def record(items: list, ctx) -> None:
        line = {"batch_id": ctx.batch_id, "attempt": ctx.attempt, "items": items}
        os.write(log, (json.dumps(line) + "\n").encode())  # one atomic append per call
        time.sleep(sleep)

    yard.run_worker(concurrency=2, lease=lease, poll_interval=0.2)


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "produce":
        produce(url, int(rest[0]), int(rest[1]), int(rest[2]))
    else:
        work(url, rest[0], float(rest[1]), float(rest[2]))
