"""Threads adding to one base: 8 threads beside 1, and beside 8 threads on a base each.

    python bench/hot_base.py [--repeat 5] [--calls 2000] [--threads 8]

Each side adds `--calls` single items in all (split across its threads) through one Yard,
durably (each call returns once committed), on a fresh store of each kind; the sides take
turns run by run (`median_rates`). Prints items/s and the ratios to one thread. Across a
network, see the PostgreSQL figures of bench/network.py.
"""

from __future__ import annotations

import argparse
import threading
import time

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table
from accumulator import ITEM, noop_yard


def adds(url: str, calls: int, threads: int, one_base: bool) -> tuple[int, float]:
    """`calls` single-item adds from `threads` threads sharing one Yard; timed from the
    moment they all start (opening the yard and a first add each are set-up)."""
    yard = noop_yard(url)
    per_thread = calls // threads
    start = threading.Barrier(threads + 1)

    def add(base: str, n: int) -> None:
        yard.add_items(base, [{"i": n, **ITEM}], max_batch_size=100, on_flush="noop")

    def body(t: int) -> None:
        base = "bench" if one_base else f"bench-{t}"
        add(base, -1 - t)  # the pool grows to a connection per thread
        start.wait()
        for i in range(per_thread):
            add(base, t * per_thread + i)

    workers = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    yard.close()
    return per_thread * threads, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    n, calls = args.threads, args.calls

    def sqlite(threads: int, one_base: bool = True):
        return lambda: adds("sqlite:///" + fresh_sqlite(), calls, threads, one_base)

    def postgres(threads: int, one_base: bool = True):
        def run() -> tuple[int, float]:
            with fresh_postgres() as url:
                return adds(url, calls, threads, one_base)

        return run

    for name, side in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        one, hot, each = median_rates([side(1), side(n), side(n, False)], args.repeat)
        print_table(
            f"{name}: add_items of 1 item, {calls} calls (items/s)",
            [
                ("1 thread", one, ""),
                (f"{n} threads, one base", hot, "goal >= 4 on PostgreSQL at 1 ms"),
                (f"{n} threads, a base each", each, ""),
            ],
        )
    print("\nThe machine may be shared: compare ratios within one run, not rates across runs.")


if __name__ == "__main__":
    main()
