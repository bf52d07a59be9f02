"""Ordered bases and fleet-limited handlers, on both stores.

    python bench/ordered_and_limits.py [--repeat 5] [--batches 300] [--limited 400]
                                       [--only ordered,limited] [--stores sqlite,postgres]

- ordered: `--batches` batches of 100 items over one base, then over 8 bases, added at
  once, then drained by an in-process worker (concurrency 8, no-op handler), timed from the
  worker's start to the last flush; ordered and the same flow unordered take turns run by
  run (goal: the ordered flow at 0.9 of the unordered one or better). One ordered base is
  one flush at a time by definition: against 8 at once unordered, its ratio says what the
  order costs, not what the claim does.
- limited: `--limited` one-item batches to a handler limited to 4 calls at once that takes
  20 ms, drained by two `batchyard worker` processes of concurrency 8; the share of the
  time from the first call's start to the last call's end that 4 calls were in flight,
  and the mean calls in flight over 4 (goal: 4 in flight 90% of the time or more).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from _harness import (
    fresh_postgres,
    fresh_sqlite,
    median_rates,
    print_table,
    start_worker,
    stop_workers,
)
from batchyard import Yard

CONCURRENCY = 4  # as _limited_app.py declares it
ITEM = {"payload": "x" * 40}


def drain(url: str, batches: int, ordered: bool, bases: int) -> tuple[int, float]:
    """Add `batches` full batches over `bases` bases, then time a worker draining them."""
    yard = Yard(url)
    done = threading.Event()
    flushed = [0]
    per_base = batches // bases
    batches = per_base * bases

    lock = threading.Lock()

    @yard.handler("noop")
    def noop(items, ctx):
        with lock:  # the handler runs on 8 threads at once
            flushed[0] += 1
            if flushed[0] == batches:
                done.set()

    for base in range(bases):
        yard.add_items(
            f"bench-{base}",
            [{"i": i, **ITEM} for i in range(per_base * 100)],
            max_batch_size=100,
            on_flush="noop",
            ordered=ordered,
        )
    worker = yard.worker(concurrency=8)
    start = time.perf_counter()
    thread = threading.Thread(target=worker.run)
    thread.start()
    done.wait(600)
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join()
    yard.close()
    return batches * 100, elapsed


def limited(url: str, batches: int) -> tuple[float, float]:
    """(share of the busy span with 4 calls in flight, mean calls in flight / 4)."""
    record = Path(tempfile.mkdtemp(prefix="batchyard-bench-")) / "calls.jsonl"
    yard = Yard(url)
    yard.handler("limited", concurrency=CONCURRENCY)(lambda items, ctx: None)
    env = {"BENCH_RECORD": str(record)}
    workers = [start_worker(url, "_limited_app:yard", env=env) for _ in range(2)]
    try:
        while _count(yard, "SELECT count(*) AS n FROM batchyard_handler_limits") < 1:
            time.sleep(0.05)
        yard.add_items("lim", list(range(batches)), max_batch_size=1, on_flush="limited")
        while not record.exists() or len(record.read_text().splitlines()) < batches:
            time.sleep(0.1)
    finally:
        stop_workers(workers)
        yard.close()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    events = sorted([(s, 1) for s, _ in calls] + [(e, -1) for _, e in calls])
    first, last = events[0][0], events[-1][0]
    full = weighted = 0.0
    running, at = 0, first
    for when, step in events:
        full += (when - at) if running >= CONCURRENCY else 0.0
        weighted += (when - at) * running
        running, at = running + step, when
    span = last - first
    return full / span, weighted / span / CONCURRENCY


def _count(yard: Yard, sql: str) -> int:
    with yard.store.transaction(write=False) as tx:
        return int(tx.one(sql)["n"])


def stores(names: list[str]) -> list[tuple[str, Callable[[], AbstractContextManager[str]]]]:
    found: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = []
    if "sqlite" in names:
        found.append(("SQLite", lambda: nullcontext(f"sqlite:///{fresh_sqlite()}")))
    if "postgres" in names:
        found.append(("PostgreSQL", fresh_postgres))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--limited", type=int, default=400)
    parser.add_argument("--only", default="ordered,limited")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    only = args.only.split(",")
    for name, fresh in stores(args.stores.split(",")):
        for bases in (1, 8) if "ordered" in only else ():

            def run(
                ordered: bool,
                bases: int = bases,
                fresh: Callable[[], AbstractContextManager[str]] = fresh,
            ) -> Callable[[], tuple[int, float]]:
                def once() -> tuple[int, float]:
                    with fresh() as url:
                        return drain(url, args.batches, ordered, bases)

                return once

            unordered, ordered = median_rates([run(False), run(True)], args.repeat)
            print_table(
                f"{name}: {args.batches} batches of 100 over {bases} base(s), drained by 8 threads",
                [
                    ("unordered (items/s)", unordered, ""),
                    ("ordered (items/s)", ordered, "goal: ratio >= 0.9"),
                ],
            )
        if "limited" in only:
            shares, means = [], []
            for _ in range(args.repeat):
                with fresh() as url:
                    share, mean = limited(url, args.limited)
                shares.append(share)
                means.append(mean)
            print(
                f"\n{name}: handler limited to {CONCURRENCY} at once (20 ms a call), "
                f"{args.limited} batches, 2 worker processes of 8: 4 in flight "
                f"{statistics.median(shares):.0%} of the time (min {min(shares):.0%}, max "
                f"{max(shares):.0%}); mean in flight / 4: {statistics.median(means):.2f} "
                "(goal: 4 in flight >= 90% of the time)"
            )


if __name__ == "__main__":
    main()
