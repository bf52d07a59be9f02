"""Reads on a fresh store against the same reads after a million items were drained.

    python bench/reads.py [--repeat 5] [--calls 50] [--batches 10000] [--plans] [--analyze]
                          [--stores sqlite,postgres]

Two stores per dialect hold the same live state - a base "hot" with two batches closed for
their size and an open one of 50 items, a base "cold" with an open batch - and a history
drained through "hot", finished two hours ago (so a retention of a day keeps all of it):
10,000 items (100 completed batches of 100 and their flush records) on the fresh store,
1M items (10,000 batches) on the other; see `_history.py`. The fresh store's history is
just long enough that every limited read (a page of 100 batches, 20 flushes) returns as
many rows on both. Each read is timed on both in turns (`--calls` calls a turn, `--repeat`
turns); the ratio after/fresh is the figure (goal: at most 2). `--plans` prints the query
plans of every statement of each read on the store with history (EXPLAIN ANALYZE on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite). The stores are measured as the inserts leave them,
as a drain leaves them: PostgreSQL's statistics are whatever autovacuum has gathered by then
(often none yet), SQLite has none; `--analyze` runs ANALYZE on both stores first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from _harness import fresh_postgres, fresh_sqlite
from _history import drained_history
from batchyard import Yard
from batchyard.overview import Overview
from batchyard.store.base import Tx

FRESH_BATCHES = 100
Read = Callable[[Yard], object]
READS: dict[str, Read] = {
    "get_batch_status(base)": lambda y: y.get_batch_status("hot"),
    "get_flush_history(base)": lambda y: y.get_flush_history("hot"),
    "list_batches()": lambda y: y.list_batches(),
    "list_batches('flushing')": lambda y: y.list_batches("flushing"),
    "list_batches('dead')": lambda y: y.list_batches("dead"),
    "overview snapshot (dashboard, /metrics)": lambda y: Overview.of(y).snapshot(),
    "overview bases (dashboard batches page)": lambda y: Overview.of(y).bases(),
}


def live_state(yard: Yard) -> None:
    """What both stores hold: live batches, and a flush in the last hour."""
    yard.add_items("hot", [{"i": i} for i in range(250)], max_batch_size=100, on_flush="noop")
    yard.add_items("cold", [{"i": i} for i in range(7)], max_batch_size=100, on_flush="noop")


def open_yard(url: str, history_batches: int) -> Yard:
    yard = Yard(url)
    yard.handler("noop")(lambda items, ctx: None)
    drained_history(yard.store, "hot", history_batches, 100, completed_at=time.time() - 7200)
    live_state(yard)
    return yard


def per_call_ms(yard: Yard, read: Read, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        read(yard)
    return (time.perf_counter() - start) / calls * 1000


@contextmanager
def recorded() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The statements `Tx.execute` runs meanwhile (SQL as written, with its parameters)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    original = Tx.execute

    def execute(tx: Tx, sql: str, params: Any = None) -> Any:
        seen.append((sql, dict(params or {})))
        return original(tx, sql, params)

    Tx.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Tx.execute = original  # type: ignore[method-assign]


def print_plans(yard: Yard, dialect: str) -> None:
    for label, read in READS.items():
        with recorded() as seen:
            read(yard)
        print(f"\n#### {dialect}: {label}\n")
        for sql, params in seen:
            if sql.strip() == "SELECT {now} AS now":
                continue
            explain = (
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                if dialect == "postgres"
                else "EXPLAIN QUERY PLAN "
            )
            with yard.store.transaction() as tx:
                rows = tx.all(explain + sql, params)
            print("```sql\n" + sql + "\n```\n```")
            for row in rows:
                values = list(row.values()) if hasattr(row, "values") else list(row)
                print(values[0] if dialect == "postgres" else f"{values[1]:>3} {values[-1]}")
            print("```")


def measure(dialect: str, url_fresh: str, url_old: str, args: argparse.Namespace) -> None:
    fresh = open_yard(url_fresh, FRESH_BATCHES)
    old = open_yard(url_old, args.batches)
    if args.analyze:
        for yard in (fresh, old):
            with yard.store.transaction() as tx:
                tx.execute("ANALYZE")
    for yard in (fresh, old):  # warm caches and prepared texts alike
        for read in READS.values():
            read(yard)
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in READS}
    for _ in range(args.repeat):
        for label, read in READS.items():
            times[label][0].append(per_call_ms(fresh, read, args.calls))
            times[label][1].append(per_call_ms(old, read, args.calls))
    items = args.batches * 100
    print(
        f"\n## {dialect}: 10k items drained (fresh) vs {items:,} (after); ms per call, "
        f"median of {args.repeat} turns of {args.calls} calls"
        f"{', after ANALYZE' if args.analyze else ''}\n"
    )
    print(f"| {'read':<42} | {'fresh':>8} | {'after':>9} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 11}|{'-' * 8}|")
    for label, (a, b) in times.items():
        fa, fb = statistics.median(a), statistics.median(b)
        print(f"| {label:<42} | {fa:>8.3f} | {fb:>9.3f} | {fb / fa:>6.2f} |")
    if args.plans:
        print_plans(old, dialect)
    fresh.close()
    old.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batches", type=int, default=10_000, help="of 100 items")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--plans", action="store_true")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE the stores first")
    args = parser.parse_args()
    stores = args.stores.split(",")
    if "sqlite" in stores:
        measure("sqlite", f"sqlite:///{fresh_sqlite()}", f"sqlite:///{fresh_sqlite()}", args)
    if "postgres" in stores:
        with ExitStack() as stack:
            a = stack.enter_context(fresh_postgres())
            b = stack.enter_context(fresh_postgres())
            measure("postgres", a, b, args)


if __name__ == "__main__":
    main()
