"""batchyard across a network: PostgreSQL behind a proxy that delays each direction, beside
raw psycopg and pgqueuer in the same run, with the round trips of each operation counted.

    python bench/network.py [--repeat 3] [--delays 0,0.5,1] [--items 100000]
                            [--only adds,threads,drain,latency] [--quick]
                            [--synchronous-commit off] [--trace FILE]

`--delays` are added round trips in milliseconds (half of each is added to each direction);
0 still goes through the proxy, which counts the turns and costs ~0.2 ms a round trip
itself (SELECT 1 is timed before and after the runs: what each setting really was). Every run on
every delay takes its turn with the others (`median_rates`), so a drift of the shared
machine weighs on each side and each delay alike.

- adds: 1 item per add_items call, 1 thread, against raw psycopg (BEGIN, one-row INSERT,
  COMMIT) and pgqueuer's enqueue of one job, on connections through the proxy.
- threads: the same with 8 threads: batchyard on one base and on a base each.
- drain: `--items` items (batches of 100) flushed by 1, 2 and 4 `batchyard worker`
  processes at the default concurrency, timed from the add's commit to the last flush;
  round trips and CPU (the worker processes', and their PostgreSQL backends' from /proc)
  per flushed batch.
- latency: an idle in-process worker, from the add that fills a batch to the handler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

import psycopg

from _harness import PG_ADMIN_URL, fresh_postgres, median_rates
from _netproxy import DelayProxy, select1_ms
from accumulator import ITEM, latency, noop_yard, worker_processes
from batchyard import Yard
from raw import TABLE, postgres_insert_calls

WORKER_APP = "batchyard-bench-worker"  # application_name of the measured worker backends
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
Run = Callable[[], tuple[int, float]]


@dataclass
class Meter:
    """The proxy plus what the runs counted: round trips and CPU per operation, by label."""

    proxy: DelayProxy
    settings: dict[str, str]  # connection parameters of every measured connection
    turns: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    _start: float = 0.0

    def at(self, delay_ms: float) -> None:
        self.proxy.delay_ms = delay_ms / 2  # a round trip's delay, half each way

    def through(self, url: str, **params: str) -> str:
        """`url` through the proxy, with the settings and `params` as URL parameters."""
        url = self.proxy.via(url)
        query = urlencode({**self.settings, **params}, quote_via=quote)
        return f"{url}{'&' if urlsplit(url).query else '?'}{query}" if query else url

    def start(self) -> None:
        self.proxy.reset()
        self._start = time.perf_counter()

    def stop(self, label: str, ops: int, per: int | None = None) -> tuple[int, float]:
        elapsed = time.perf_counter() - self._start
        self.turns[label].append(self.proxy.round_trips / (per or ops))
        return ops, elapsed


def threaded(
    meter: Meter, label: str, threads: int, prepare: Callable[[int], Callable[[], int]]
) -> tuple[int, float]:
    """`prepare(t)` runs in thread t untimed (connect, warm up) and returns the timed body,
    which returns its operations; all bodies start together."""
    ready = threading.Barrier(threads + 1)
    go = threading.Barrier(threads + 1)
    done: list[int] = []
    errors: list[BaseException] = []

    def thread(t: int) -> None:
        try:
            body = prepare(t)
            ready.wait()
            go.wait()
            done.append(body())
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
            go.abort()

    workers = [threading.Thread(target=thread, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    try:
        ready.wait()
        meter.start()
        go.wait()
    except threading.BrokenBarrierError:
        pass
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return meter.stop(label, sum(done))


# --- the sides -----------------------------------------------------------------------------


def raw_inserts(meter: Meter, label: str, threads: int, calls: int) -> tuple[int, float]:
    """One-row INSERT transactions (BEGIN, INSERT, COMMIT) on a connection per thread."""
    with fresh_postgres() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE)
        conns: list[psycopg.Connection] = []

        def prepare(t: int) -> Callable[[], int]:
            conn = psycopg.connect(meter.through(url), autocommit=True)
            conns.append(conn)
            postgres_insert_calls(conn, 1, 1, first=-1 - t)  # warm-up

            def body() -> int:
                postgres_insert_calls(conn, calls, 1, first=t * calls)
                return calls

            return body

        try:
            return threaded(meter, label, threads, prepare)
        finally:
            for conn in conns:
                conn.close()


def pgqueuer_enqueues(meter: Meter, label: str, threads: int, calls: int) -> tuple[int, float]:
    """pgqueuer's synchronous enqueue of one job per call, a connection per thread."""
    from pgqueuer import PsycopgDriver, Queries
    from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
    from pgqueuer.adapters.persistence.queries import SyncQueries

    with fresh_postgres() as url:

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await Queries(PsycopgDriver(conn)).install()
            await conn.close()

        asyncio.run(install())
        conns: list[psycopg.Connection] = []

        def prepare(t: int) -> Callable[[], int]:
            conn = psycopg.connect(meter.through(url), autocommit=True)
            conns.append(conn)
            queries = SyncQueries(SyncPsycopgDriver(conn))
            queries.enqueue("noop", b"warm-up")

            def body() -> int:
                for i in range(calls):
                    queries.enqueue("noop", str(t * calls + i).encode())
                return calls

            return body

        try:
            return threaded(meter, label, threads, prepare)
        finally:
            for conn in conns:
                conn.close()


def batchyard_adds(
    meter: Meter, label: str, threads: int, calls: int, one_base: bool = True
) -> tuple[int, float]:
    """add_items of one item per call; one Yard (and its pool) shared by the threads."""
    with fresh_postgres() as url:
        Yard(url).close()  # migrations, direct: set-up
        yard = noop_yard(meter.through(url))

        def add(base: str, n: int) -> None:
            yard.add_items(base, [{"i": n, **ITEM}], max_batch_size=100, on_flush="noop")

        def prepare(t: int) -> Callable[[], int]:
            base = "bench" if one_base else f"bench-{t}"
            add(base, -1 - t)  # warm-up: the pool grows to a connection per thread

            def body() -> int:
                for i in range(calls):
                    add(base, t * calls + i)
                return calls

            return body

        try:
            return threaded(meter, label, threads, prepare)
        finally:
            yard.close()


def drain(meter: Meter, label: str, items: int, processes: int) -> tuple[int, float]:
    """Workers up and idle, `items` added (directly, in one call); timed from the add's
    commit to the last batch flushed. Round trips and CPU per batch of 100."""
    with fresh_postgres() as url:
        yard = noop_yard(url)  # direct: the adds and the polling are not measured
        through = meter.through(url, application_name=WORKER_APP)
        try:
            with worker_processes(through, processes, yard) as workers:
                batch = [{"i": n, **ITEM} for n in range(items)]
                yard.add_items("bench", batch, max_batch_size=100, on_flush="noop")
                meter.start()
                before = cpu_now(url, [w.pid for w in workers])
                while yard.list_batches("flushing", limit=1):
                    time.sleep(0.01)
                result = meter.stop(label, items, per=items // 100)
                after = cpu_now(url, [w.pid for w in workers])
            worker_cpu = sum(after[0].values()) - sum(before[0].values())
            server_cpu = sum(v - before[1].get(pid, 0.0) for pid, v in after[1].items())
            batches = items / 100
            meter.cpu[label].append((worker_cpu / batches, server_cpu / batches))
            return result
        finally:
            yard.close()


def cpu_now(url: str, worker_pids: Sequence[int]) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds so far of the worker processes and of their PostgreSQL backends (the
    connections named WORKER_APP; a backend that ends mid-run takes its CPU with it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        backends = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = %s",
                (WORKER_APP,),
            )
        ]
    return {p: proc_cpu(p) for p in worker_pids}, {p: proc_cpu(p) for p in backends}


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


# --- the report ----------------------------------------------------------------------------


def label_of(delay: float) -> str:
    return f"{delay:g} ms"


def grid(
    title: str,
    delays: Sequence[float],
    rows: Sequence[tuple[str, str | None]],
    rates: dict[tuple[str, float], dict[str, float]],
    meter: Meter,
    unit: str,
    ratios: Sequence[tuple[str, str, str]] = (),
) -> None:
    """A row per side (key, label), a column per delay: median rate and round trips per
    `unit`; then ratio rows (label, numerator key, denominator key)."""
    print(f"\n## {title}\n")
    print("| | " + " | ".join(label_of(d) for d in delays) + " |")
    print("|---" * (len(delays) + 1) + "|")
    for key, label in rows:
        cells = []
        for d in delays:
            rate = rates[(key, d)]
            turns = statistics.median(meter.turns[f"{key}@{d}"])
            cells.append(f"{rate['median']:,.0f}/s ({turns:.1f} rt/{unit})")
        print(f"| {label or key} | " + " | ".join(cells) + " |")
    for label, num, den in ratios:
        cells = [f"{rates[(num, d)]['median'] / rates[(den, d)]['median']:.2f}" for d in delays]
        print(f"| {label} | " + " | ".join(cells) + " |")


def measure(
    meter: Meter,
    delays: Sequence[float],
    sides: dict[str, Callable[[str], tuple[int, float]]],
    repeat: int,
) -> dict[tuple[str, float], dict[str, float]]:
    """Each side at each delay, all taking turns run by run; a side gets its meter label."""
    keys = [(key, d) for d in delays for key in sides]

    def run_of(key: str, d: float) -> Run:
        def run() -> tuple[int, float]:
            meter.at(d)
            return sides[key](f"{key}@{d}")

        return run

    rates = median_rates([run_of(k, d) for k, d in keys], repeat)
    return dict(zip(keys, rates, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--delays", default="0,0.5,1", help="added round trip, ms")
    parser.add_argument("--calls", type=int, default=1000, help="adds of 1 thread")
    parser.add_argument("--thread-calls", type=int, default=250, help="adds of each of 8 threads")
    parser.add_argument("--items", type=int, default=100_000, help="items drained")
    parser.add_argument("--samples", type=int, default=100, help="latency samples per run")
    parser.add_argument("--only", default="adds,threads,drain,latency")
    parser.add_argument(
        "--synchronous-commit",
        help="set on every measured connection (all sides alike), e.g. off: on a machine "
        "whose disk is shared, to see round trips rather than the wait for WAL flushes",
    )
    parser.add_argument(
        "--trace", help="a file to write each round trip to: connection, what was sent"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of 1-2 minutes")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.delays, args.calls, args.thread_calls = 1, "0,1", 200, 40
        args.items, args.samples = 10_000, 30
    delays = [float(d) for d in args.delays.split(",")]
    parts, r = set(args.only.split(",")), args.repeat

    with DelayProxy(trace=args.trace) as proxy:
        settings = {}
        if args.synchronous_commit:
            settings["options"] = f"-c synchronous_commit={args.synchronous_commit}"
        meter = Meter(proxy, settings)
        network(meter, delays, "before")

        if "adds" in parts:
            c = args.calls
            rates = measure(
                meter,
                delays,
                {
                    "raw": lambda lb: raw_inserts(meter, lb, 1, c),
                    "pgqueuer": lambda lb: pgqueuer_enqueues(meter, lb, 1, c),
                    "ours": lambda lb: batchyard_adds(meter, lb, 1, c),
                },
                r,
            )
            grid(
                f"add_items, 1 item per call, 1 thread ({c} calls; medians of {r})",
                delays,
                [
                    ("raw", "raw psycopg: BEGIN, INSERT one row, COMMIT"),
                    ("pgqueuer", "pgqueuer: enqueue one job"),
                    ("ours", "batchyard: add_items, 1 item"),
                ],
                rates,
                meter,
                "call",
                [("batchyard / raw", "ours", "raw"), ("batchyard / pgqueuer", "ours", "pgqueuer")],
            )
            ones = rates

        if "threads" in parts:
            c = args.thread_calls
            rates = measure(
                meter,
                delays,
                {
                    "raw8": lambda lb: raw_inserts(meter, lb, 8, c),
                    "pgqueuer8": lambda lb: pgqueuer_enqueues(meter, lb, 8, c),
                    "one": lambda lb: batchyard_adds(meter, lb, 8, c, one_base=True),
                    "each": lambda lb: batchyard_adds(meter, lb, 8, c, one_base=False),
                },
                r,
            )
            grid(
                f"add_items, 1 item per call, 8 threads ({c} calls each; medians of {r})",
                delays,
                [
                    ("raw8", "raw psycopg, 8 threads"),
                    ("pgqueuer8", "pgqueuer enqueue, 8 threads"),
                    ("one", "batchyard, 8 threads, one base"),
                    ("each", "batchyard, 8 threads, a base each"),
                ],
                rates,
                meter,
                "call",
                [
                    ("one base / raw", "one", "raw8"),
                    ("one base / pgqueuer", "one", "pgqueuer8"),
                    ("a base each / pgqueuer", "each", "pgqueuer8"),
                ],
            )
            if "adds" in parts:
                cells = [
                    f"{rates[('one', d)]['median'] / ones[('ours', d)]['median']:.2f}"
                    for d in delays
                ]
                print(
                    "| one base, 8 threads / 1 thread (other table) | " + " | ".join(cells) + " |"
                )

        if "drain" in parts:
            n = args.items
            rates = measure(
                meter,
                delays,
                {f"p{p}": (lambda lb, p=p: drain(meter, lb, n, p)) for p in (1, 2, 4)},
                r,
            )
            grid(
                f"Drain {n:,} items in batches of 100, default concurrency (medians of {r})",
                delays,
                [(f"p{p}", f"{p} worker process{'es' if p > 1 else ''}") for p in (1, 2, 4)],
                rates,
                meter,
                "batch",
                [("2 processes / 1", "p2", "p1"), ("4 processes / 1", "p4", "p1")],
            )
            first = rates[("p1", delays[0])]["median"]
            cells = [f"{rates[('p1', d)]['median'] / first:.2f}" for d in delays]
            print(f"| 1 process vs {label_of(delays[0])} | " + " | ".join(cells) + " |")
            for p in (1, 2, 4):
                cells = []
                for d in delays:
                    runs = meter.cpu[f"p{p}@{d}"]
                    worker = statistics.median(w for w, _ in runs) * 1000
                    server = statistics.median(s for _, s in runs) * 1000
                    cells.append(f"{worker + server:.2f} ({worker:.2f} + {server:.2f})")
                print(f"| CPU ms/batch, {p} proc (worker + server) | " + " | ".join(cells) + " |")

        if "latency" in parts:
            print(f"\n## Flush latency, idle in-process worker (p50 / p99 ms, medians of {r})\n")
            found: dict[float, list[tuple[float, float, float]]] = defaultdict(list)
            for _ in range(r):
                for d in delays:
                    meter.at(d)
                    with fresh_postgres() as url:
                        Yard(url).close()
                        p50, p99 = latency(meter.through(url), args.samples, ready=proxy.reset)
                        found[d].append((p50, p99, proxy.round_trips / args.samples))
            for d in delays:
                p50 = statistics.median(x[0] for x in found[d]) * 1000
                p99 = statistics.median(x[1] for x in found[d]) * 1000
                turns = statistics.median(x[2] for x in found[d])
                print(
                    f"- {label_of(d)}: {p50:.1f} / {p99:.1f} ms; {turns:.1f} round trips a "
                    "sample (the add, the flush, and the idle worker's polls over 20 ms)"
                )
        network(meter, delays, "after")
    print("\nThe machine is shared: compare ratios within this run, not rates across runs.")


def network(meter: Meter, delays: Sequence[float], when: str) -> None:
    """What each setting really is (a loaded machine wakes the proxy late)."""
    print(f"\n## The network {when} the runs: SELECT 1, p50 / p99 ms\n")
    t = select1_ms(PG_ADMIN_URL, 1000)
    print(f"- without the proxy: {t['p50']:.2f} / {t['p99']:.2f}")
    for d in delays:
        meter.at(d)
        t = select1_ms(meter.through(meter.proxy.url()), 1000)
        print(f"- {label_of(d)} (+{d:g} ms): {t['p50']:.2f} / {t['p99']:.2f}")


if __name__ == "__main__":
    main()
