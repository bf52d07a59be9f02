"""The accumulator measured side by side with the raw limit of the same store.

    python bench/accumulator.py [--repeat 5] [--calls 3000] [--items 20000] [--only adds]

Prints, per store: durable add_items calls/s (1 and 100 items per call) against plain
inserts with the same durability, end-to-end items/s from add to a no-op handler, drain
items/s with 1 and 2 worker processes (PostgreSQL), and flush latency p50/p99. With
``--only limits``: the same end-to-end flow of items of 10 B to 1 KB from 4 threads with a
byte limit, and with a debounce, beside it without either.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from _harness import (
    fresh_postgres,
    fresh_sqlite,
    median_rates,
    print_table,
    start_worker,
    stop_workers,
    timed,
)
from batchyard import Yard
from raw import raw_postgres_inserts, raw_sqlite_inserts

ITEM = {"payload": "x" * 40}
# a second baseline: the no-index table stays the limit the goal is measured against
KEYED = "same primary key as batchyard_items"


def noop_yard(url: str) -> Yard:
    yard = Yard(url)
    yard.handler("noop")(lambda items, ctx: None)
    return yard


def adds(url: str, calls: int, per_call: int) -> tuple[int, float]:
    """Timed from the first call to the last (opening the yard, which migrates a new store,
    is set-up, like the raw side's CREATE TABLE)."""
    yard = noop_yard(url)
    start = time.perf_counter()
    for c in range(calls):
        yard.add_items(
            "bench",
            [{"i": c * per_call + k, **ITEM} for k in range(per_call)],
            max_batch_size=100,
            on_flush="noop",
        )
    elapsed = time.perf_counter() - start
    yard.close()
    return calls * per_call, elapsed


def end_to_end(url: str, items: int) -> int:
    """Single-item adds while an in-process worker flushes; until the last is handled."""
    yard = Yard(url)
    seen = []
    done = threading.Event()

    @yard.handler("count")
    def count(batch, ctx):
        seen.append(len(batch))
        if sum(seen) >= items:
            done.set()

    worker = yard.worker(concurrency=2)
    thread = threading.Thread(target=worker.run)
    thread.start()
    for n in range(items):
        yard.add_items("bench", [{"i": n, **ITEM}], max_batch_size=100, on_flush="count")
    yard.flush("bench")
    done.wait(600)
    worker.stop()
    thread.join()
    yard.close()
    return items


def drain(url: str, items: int, processes: int) -> tuple[int, float]:
    """Flush `items` already-added items with `processes` worker processes."""
    yard = noop_yard(url)
    try:
        with worker_processes(url, processes, yard, concurrency=4):
            start = time.perf_counter()
            yard.add_items(
                "bench",
                [{"i": n, **ITEM} for n in range(items)],
                max_batch_size=100,
                on_flush="noop",
            )
            while _count(
                yard, "SELECT count(*) AS n FROM batchyard_tasks WHERE kind = 'accumulator.flush'"
            ):
                time.sleep(0.01)
            return items, time.perf_counter() - start
    finally:
        yard.close()


@contextmanager
def worker_processes(
    url: str, processes: int, yard: Yard, concurrency: int | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`batchyard worker` processes with a no-op handler on `url`, registered (as `yard`, on
    the same database, sees) when this yields; terminated on leaving."""
    options = [] if concurrency is None else ["--concurrency", str(concurrency)]
    workers = [start_worker(url, "_noop_app:yard", *options) for _ in range(processes)]
    try:
        while _count(yard, "SELECT count(*) AS n FROM batchyard_workers") < processes:
            time.sleep(0.05)
        yield workers
    finally:
        stop_workers(workers)


def latency(
    url: str, samples: int, ready: Callable[[], None] = lambda: None
) -> tuple[float, float]:
    """From the add that fills a batch to the handler call, with an idle worker; `ready`
    is called when the worker is up, before the first sample."""
    yard = Yard(url)
    lags: list[float] = []
    started = [0.0]
    got = threading.Event()

    @yard.handler("mark")
    def mark(batch, ctx):
        lags.append(time.perf_counter() - started[0])
        got.set()

    worker = yard.worker(concurrency=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.5)
        ready()
        for n in range(samples):
            got.clear()
            started[0] = time.perf_counter()
            yard.add_items("lat", [n], max_batch_size=1, on_flush="mark")
            got.wait(10)
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join()
    yard.close()
    lags.sort()
    return statistics.median(lags), lags[int(len(lags) * 0.99) - 1]


# the flow of `limits`: the same items and batch size on each side, one side with a byte
# limit (most batches still close at 100 items, some at 64 KB), one with a debounce
LIMITED = {
    "plain": {"max_batch_size": 100},
    "bytes": {"max_batch_size": 100, "max_batch_bytes": 64_000},
    "idle": {"max_batch_size": 100, "flush_interval": 5.0, "flush_after_idle": 0.5},
}


def limited_flow(url: str, items: int, config: dict[str, Any], threads: int = 4) -> int:
    """Single-item adds of items of 10 B to 1 KB from `threads` threads sharing one yard,
    while an in-process worker flushes; until the last is handled."""
    yard = Yard(url)
    handled = [0]
    done = threading.Event()
    lock = threading.Lock()

    @yard.handler("count")
    def count(batch, ctx):
        with lock:
            handled[0] += len(batch)
            if handled[0] >= items:
                done.set()

    rng = random.Random(7)  # the same items on every side
    calls = [[{"i": n, "pad": "x" * rng.randint(0, 1000)}] for n in range(items)]
    per_thread = len(calls) // threads

    def body(t: int) -> None:
        for call in calls[t * per_thread : (t + 1) * per_thread]:
            yard.add_items("bench", call, on_flush="count", **config)

    worker = yard.worker(concurrency=2)
    runner = threading.Thread(target=worker.run)
    runner.start()
    adders = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    yard.flush("bench")
    done.wait(600)
    worker.stop()
    runner.join()
    yard.close()
    return per_thread * threads


def limits(r, items, sqlite_url, on_pg) -> None:
    """The flow with a byte limit, and with a debounce, beside it without: turns, run by run."""
    sides = {
        "SQLite": lambda c: lambda: timed(lambda: limited_flow(sqlite_url(), items, c)),
        "PostgreSQL": lambda c: on_pg(lambda u: timed(lambda: limited_flow(u, items, c))),
    }
    for name, side in sides.items():
        runs = [side(config) for config in LIMITED.values()]
        plain, by_bytes, idle = median_rates(runs, r)
        print_table(
            f"{name}: items of 10 B - 1 KB from 4 threads -> no-op handler (items/s)",
            [
                ("max_batch_size=100", plain, "the baseline"),
                ("... and max_batch_bytes=64_000", by_bytes, "goal >= 0.9"),
                ("... and flush_after_idle=0.5, flush_interval=5", idle, ""),
            ],
        )


def _count(yard: Yard, sql: str) -> int:
    with yard.store.transaction(write=False) as tx:
        return int(tx.one(sql)["n"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument(
        "--only",
        choices=("adds", "flow", "limits"),
        help="only the durable adds, only end to end / drain / latency, or only the limits",
    )
    args = parser.parse_args()
    r, calls, items = args.repeat, args.calls, args.items

    def sqlite_url() -> str:
        return "sqlite:///" + fresh_sqlite()

    def on_pg(fn):
        def run():
            with fresh_postgres() as url:
                return fn(url)

        return run

    if args.only == "limits":
        limits(r, items, sqlite_url, on_pg)
        return
    if args.only != "flow":
        durable_adds(r, calls, sqlite_url, on_pg)
    if args.only != "adds":
        flow(r, items, sqlite_url, on_pg)


def durable_adds(r, calls, sqlite_url, on_pg) -> None:
    """Raw, keyed raw and add_items take turns, run by run (see `median_rates`)."""

    def sqlite_raw(per_call, keyed=False):
        return lambda: raw_sqlite_inserts(fresh_sqlite(), calls // per_call, per_call, keyed=keyed)

    def pg_raw(per_call, keyed=False):
        return on_pg(lambda u: raw_postgres_inserts(u, calls // per_call, per_call, keyed=keyed))

    for per_call in (1, 100):
        raw, keyed, ours = median_rates(
            [
                sqlite_raw(per_call),
                sqlite_raw(per_call, True),
                lambda n=per_call: adds(sqlite_url(), calls // n, n),
            ],
            r,
        )
        print_table(
            f"SQLite (WAL, synchronous=NORMAL): durable adds, {per_call} per call",
            [
                (f"raw sqlite3, {per_call} rows/tx (rows/s)", raw, "the limit"),
                ("raw, keyed like batchyard_items (rows/s)", keyed, KEYED),
                (f"add_items, {per_call} items/call (items/s)", ours, "goal >= 0.7"),
            ],
        )
    for per_call in (1, 100):
        raw, keyed, ours = median_rates(
            [
                pg_raw(per_call),
                pg_raw(per_call, True),
                on_pg(lambda u, n=per_call: adds(u, calls // n, n)),
            ],
            r,
        )
        print_table(
            f"PostgreSQL (synchronous_commit=on): durable adds, {per_call} per call",
            [
                (f"raw psycopg, {per_call} rows/tx (rows/s)", raw, "the limit"),
                ("raw, keyed like batchyard_items (rows/s)", keyed, KEYED),
                (f"add_items, {per_call} items/call (items/s)", ours, "goal >= 0.7"),
            ],
        )


def flow(r, items, sqlite_url, on_pg) -> None:
    """End to end, drain and latency; the sides of each take turns run by run."""
    lite, pg = median_rates(
        [
            lambda: timed(lambda: end_to_end(sqlite_url(), items)),
            on_pg(lambda u: timed(lambda: end_to_end(u, items))),
        ],
        r,
    )
    print_table(
        "End to end: single-item adds -> no-op handler (items/s)",
        [("SQLite, in-process worker", lite, ""), ("PostgreSQL, in-process worker", pg, "")],
    )
    one, two = median_rates(
        [on_pg(lambda u: drain(u, items * 5, 1)), on_pg(lambda u: drain(u, items * 5, 2))], r
    )
    print_table(
        "Drain: flushing already-added items, PostgreSQL (items/s)",
        [("1 worker process", one, ""), ("2 worker processes", two, "scale-out")],
    )
    print("\n## Flush latency: add that fills a batch -> handler, idle in-process worker\n")
    results: dict[str, list[tuple[float, float]]] = {"SQLite": [], "PostgreSQL": []}
    for _ in range(r):
        results["SQLite"].append(latency(sqlite_url(), 100))
        with fresh_postgres() as url:
            results["PostgreSQL"].append(latency(url, 100))
    for name, found in results.items():
        p50 = statistics.median(x[0] for x in found) * 1000
        p99 = statistics.median(x[1] for x in found) * 1000
        print(f"- {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (medians of {r} runs of 100)")


if __name__ == "__main__":
    main()
