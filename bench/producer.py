"""The write-behind producer against raw batched inserts and against add_items per item.

    python bench/producer.py [--repeat 5] [--n 100000]
    python bench/producer.py --rss 5000000      # peak RSS while 5M items stream through

Ingest is measured until everything added is durable (`flush`).
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import time

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table
from batchyard import Yard
from raw import raw_postgres_inserts, raw_sqlite_inserts

ITEM = {"payload": "x" * 40}


def producer_ingest(url: str, n: int) -> tuple[int, float]:
    """Timed from the first add until everything is durable (opening the yard is set-up)."""
    yard = Yard(url)
    yard.handler("noop")(lambda items, ctx: None)
    with yard.producer(max_pending_items=100_000) as producer:
        start = time.perf_counter()
        for i in range(n):
            producer.add("bench", [{"i": i, **ITEM}], max_batch_size=1000, on_flush="noop")
        producer.flush()
        elapsed = time.perf_counter() - start
    yard.close()
    return n, elapsed


def add_items_ingest(url: str, n: int) -> tuple[int, float]:
    yard = Yard(url)
    yard.handler("noop")(lambda items, ctx: None)
    start = time.perf_counter()
    for i in range(n):
        yard.add_items("bench", [{"i": i, **ITEM}], max_batch_size=1000, on_flush="noop")
    elapsed = time.perf_counter() - start
    yard.close()
    return n, elapsed


def peak_rss(n: int) -> None:
    """Stream n items through a producer with a 100,000-item target; report peak RSS."""
    path = fresh_sqlite()
    yard = Yard(f"sqlite:///{path}")
    yard.handler("noop")(lambda items, ctx: None)
    marks = []
    with yard.producer(max_pending_items=100_000) as producer:
        for i in range(n):
            producer.add("rss", [{"i": i, **ITEM}], max_batch_size=10_000, on_flush="noop")
            if (i + 1) % (n // 5) == 0:
                marks.append((i + 1, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    yard.close()
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM batchyard_items").fetchone()[0]
    for items, rss_kb in marks:
        print(f"- after {items:>10,} items: peak RSS {rss_kb / 1024:,.0f} MB")
    print(f"- items stored: {rows:,} of {n:,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rss", type=int, default=0, help="run the memory test with N items")
    args = parser.parse_args()
    if args.rss:
        peak_rss(args.rss)
        return
    n, r = args.n, args.repeat

    def sqlite_url() -> str:
        return "sqlite:///" + fresh_sqlite()

    def on_pg(fn, count):
        def run():
            with fresh_postgres() as url:
                return fn(url, count)

        return run

    # the three take turns, run by run (see median_rates)
    raw, producer, add_items = median_rates(
        [
            lambda: raw_sqlite_inserts(fresh_sqlite(), n // 1000, 1000),
            lambda: producer_ingest(sqlite_url(), n),
            lambda: add_items_ingest(sqlite_url(), n // 10),
        ],
        r,
    )
    print_table(
        f"SQLite: ingest {n:,} single-item adds until durable (items/s)",
        [
            ("raw executemany, 1,000 rows/tx", raw, "the limit"),
            ("producer.add", producer, "goal >= 0.5"),
            ("add_items, one call per item", add_items, "producer should be >= 10x"),
        ],
    )
    raw, producer, add_items = median_rates(
        [
            on_pg(lambda u, c: raw_postgres_inserts(u, c // 1000, 1000), n),
            on_pg(producer_ingest, n),
            on_pg(add_items_ingest, n // 50),
        ],
        r,
    )
    print_table(
        f"PostgreSQL: ingest {n:,} single-item adds until durable (items/s)",
        [
            ("raw executemany, 1,000 rows/tx", raw, "the limit"),
            ("producer.add", producer, "goal >= 0.5"),
            ("add_items, one call per item", add_items, "producer should be >= 10x"),
        ],
    )


if __name__ == "__main__":
    main()
