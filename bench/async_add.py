"""Adds from asyncio: AsyncYard beside Yard's threads and pgqueuer's async enqueue.

    python bench/async_add.py [--repeat 5] [--calls 4000] [--tasks 8] [--sqlite]

Each side makes `--calls` single-item calls in all, each returning once committed, from
`--tasks` concurrent callers, on a fresh store per run; the sides take turns run by run
(`median_rates`):

- AsyncYard.add_items from `--tasks` tasks on one event loop, one base;
- Yard.add_items from `--tasks` threads, one base (the sync path's lane);
- pgqueuer's `Queries.enqueue` of one job from `--tasks` tasks on one loop, through
  asyncpg's pool of `--tasks` connections (the driver pgqueuer recommends), and through
  one psycopg AsyncConnection;
- and, on a quarter of the calls, AsyncYard from one task beside Yard from one thread: what
  the thread hop costs a call that nothing coalesces with.

With `--sqlite`, the first two sides on SQLite too (pgqueuer has no SQLite). With `--hop`,
what chose the design: one plain INSERT per call from one task, through a thread hop
(`run_in_executor` of psycopg's sync pool) beside psycopg's native AsyncConnectionPool and
a plain sync loop, with `synchronous_commit` on and off (off, the per-call overheads show).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table
from accumulator import ITEM, noop_yard
from batchyard import AsyncYard


def async_yard(url: str, calls: int, tasks: int) -> tuple[int, float]:
    """`calls` awaited single-item adds from `tasks` tasks of one loop; timed from the
    moment they all start (opening the yard and a first add each are set-up)."""
    yard = noop_yard(url)
    per_task = calls // tasks

    async def run() -> float:
        ayard = AsyncYard(yard)

        async def add(n: int) -> None:
            await ayard.add_items("bench", [{"i": n, **ITEM}], max_batch_size=100, on_flush="noop")

        await asyncio.gather(*(add(-1 - t) for t in range(tasks)))  # threads and connections

        async def body(t: int) -> None:
            for i in range(per_task):
                await add(t * per_task + i)

        began = time.perf_counter()
        await asyncio.gather(*(body(t) for t in range(tasks)))
        elapsed = time.perf_counter() - began
        await ayard.aclose()
        return elapsed

    elapsed = asyncio.run(run())
    yard.close()
    return per_task * tasks, elapsed


def yard_threads(url: str, calls: int, threads: int) -> tuple[int, float]:
    """The same from `threads` threads through Yard (as bench/hot_base.py)."""
    yard = noop_yard(url)
    per_thread = calls // threads
    start = threading.Barrier(threads + 1)

    def add(n: int) -> None:
        yard.add_items("bench", [{"i": n, **ITEM}], max_batch_size=100, on_flush="noop")

    def body(t: int) -> None:
        add(-1 - t)
        start.wait()
        for i in range(per_thread):
            add(t * per_thread + i)

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


def pgqueuer_enqueue(url: str, calls: int, tasks: int, driver: str) -> tuple[int, float]:
    """`calls` enqueues of one job from `tasks` tasks of one loop."""
    import asyncpg
    import psycopg
    from pgqueuer import AsyncpgPoolDriver, PsycopgDriver, Queries

    per_task = calls // tasks
    payload = str(ITEM).encode()

    async def run() -> float:
        setup = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await Queries(PsycopgDriver(setup)).install()
        if driver == "asyncpg":
            pool = await asyncpg.create_pool(url, min_size=tasks, max_size=tasks)
            queries = Queries(AsyncpgPoolDriver(pool))
        else:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            queries = Queries(PsycopgDriver(conn))
        await asyncio.gather(*(queries.enqueue("noop", payload) for _ in range(tasks)))

        async def body() -> None:
            for _ in range(per_task):
                await queries.enqueue("noop", payload)

        began = time.perf_counter()
        await asyncio.gather(*(body() for _ in range(tasks)))
        elapsed = time.perf_counter() - began
        await (pool.close() if driver == "asyncpg" else conn.close())
        await setup.close()
        return elapsed

    return per_task * tasks, asyncio.run(run())


def raw_insert(url: str, calls: int, how: str) -> tuple[int, float]:
    """`calls` single-row INSERTs, each committed, from one caller; `how` is "hop",
    "native" or "sync"."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    insert = "INSERT INTO raw_items (payload) VALUES (%s)"
    payload = (str(ITEM),)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_items (id bigserial PRIMARY KEY, payload text)"
        )
    if how == "native":

        async def native() -> float:
            async with AsyncConnectionPool(url, kwargs={"autocommit": True}) as pool:
                await pool.wait()
                began = time.perf_counter()
                for _ in range(calls):
                    async with pool.connection() as conn:
                        await conn.execute(insert, payload)
                return time.perf_counter() - began

        return calls, asyncio.run(native())
    with ConnectionPool(url, kwargs={"autocommit": True}) as pool:
        pool.wait()

        def one() -> None:
            with pool.connection() as conn:
                conn.execute(insert, payload)

        if how == "sync":
            began = time.perf_counter()
            for _ in range(calls):
                one()
            return calls, time.perf_counter() - began
        threads = ThreadPoolExecutor(8)

        async def hop() -> float:
            loop = asyncio.get_running_loop()
            began = time.perf_counter()
            for _ in range(calls):
                await loop.run_in_executor(threads, one)
            return time.perf_counter() - began

        elapsed = asyncio.run(hop())
        threads.shutdown()
        return calls, elapsed


def hop_or_native(calls: int, repeat: int) -> None:
    for commit in ("on", "off"):

        def side(how: str, commit: str = commit):
            def run() -> tuple[int, float]:
                with fresh_postgres() as url:
                    options = f"?options=-c%20synchronous_commit%3D{commit}"
                    return raw_insert(url + options, calls, how)

            return run

        hop, native, sync = median_rates([side("hop"), side("native"), side("sync")], repeat)
        print_table(
            f"PostgreSQL, synchronous_commit={commit}: {calls} INSERTs from one caller (rows/s)",
            [
                ("asyncio, thread hop (sync pool)", hop, ""),
                ("asyncio, psycopg AsyncConnectionPool", native, ""),
                ("no asyncio: sync pool, one thread", sync, ""),
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--hop", action="store_true")
    args = parser.parse_args()
    calls, n = args.calls, args.tasks
    if args.hop:
        hop_or_native(calls // 4, args.repeat)

    def on_postgres_calls(measure, calls, callers, *extra):
        def run() -> tuple[int, float]:
            with fresh_postgres() as url:
                return measure(url, calls, callers, *extra)

        return run

    def on_postgres(measure, *extra):
        return on_postgres_calls(measure, calls, n, *extra)

    ours, threads, asyncpg_pool, psycopg_conn = median_rates(
        [
            on_postgres(async_yard),
            on_postgres(yard_threads),
            on_postgres(pgqueuer_enqueue, "asyncpg"),
            on_postgres(pgqueuer_enqueue, "psycopg"),
        ],
        args.repeat,
    )
    print_table(
        f"PostgreSQL: {calls} calls of 1 item from {n} concurrent callers (items/s)",
        [
            (f"AsyncYard.add_items, {n} tasks, one base", ours, ""),
            (f"Yard.add_items, {n} threads, one base", threads, ""),
            (f"pgqueuer enqueue, {n} tasks, asyncpg pool", asyncpg_pool, ""),
            (f"pgqueuer enqueue, {n} tasks, one psycopg conn", psycopg_conn, ""),
        ],
    )
    # one caller each: what the thread hop costs a lone call (no coalescing to pay for it)
    alone = calls // 4
    lone_task, lone_thread = median_rates(
        [
            on_postgres_calls(async_yard, alone, 1),
            on_postgres_calls(yard_threads, alone, 1),
        ],
        args.repeat,
    )
    print_table(
        f"PostgreSQL: {alone} calls of 1 item from one caller (items/s)",
        [
            ("AsyncYard.add_items, 1 task", lone_task, ""),
            ("Yard.add_items, 1 thread", lone_thread, ""),
        ],
    )
    for label, rate in (
        ("Yard threads", threads),
        ("pgqueuer (asyncpg pool)", asyncpg_pool),
        ("pgqueuer (psycopg)", psycopg_conn),
    ):
        print(f"AsyncYard / {label}: {ours['median'] / rate['median']:.2f}")
    if args.sqlite:

        def on_sqlite(measure):
            return lambda: measure("sqlite:///" + fresh_sqlite(), calls, n)

        ours, threads = median_rates([on_sqlite(async_yard), on_sqlite(yard_threads)], args.repeat)
        print_table(
            f"SQLite: {calls} calls of 1 item from {n} concurrent callers (items/s)",
            [
                (f"AsyncYard.add_items, {n} tasks, one base", ours, ""),
                (f"Yard.add_items, {n} threads, one base", threads, ""),
            ],
        )
    print("\nThe machine may be shared: compare ratios within one run, not rates across runs.")


if __name__ == "__main__":
    main()
