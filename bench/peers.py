"""batchyard against peers installed from PyPI, on the same store, doing the same work: N
items, each enqueued by its own call, executed by a no-op handler.

    python bench/peers.py [--repeat 5] [--n 5000] [--peers huey,procrastinate,pgqueuer]

SQLite: huey's SqliteHuey (WAL; huey sets no synchronous pragma, so SQLite's default FULL
applies) against batchyard with ?synchronous=full - the same durability. PostgreSQL:
procrastinate and pgqueuer against batchyard, each on its own fresh database, default
synchronous_commit. batchyard groups items into batches of 100 (its unit of work); each peer
runs one job per item (theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table
from batchyard import Yard


def batchyard_run(url: str, n: int) -> tuple[int, float]:
    yard = Yard(url)
    seen = [0]
    done = threading.Event()

    @yard.handler("noop")
    def noop(items, ctx):
        seen[0] += len(items)
        if seen[0] >= n:
            done.set()

    worker = yard.worker(concurrency=4)
    thread = threading.Thread(target=worker.run)
    thread.start()
    start = time.perf_counter()
    for i in range(n):
        yard.add_items("bench", [i], max_batch_size=100, on_flush="noop")
    yard.flush("bench")
    done.wait(600)
    elapsed = time.perf_counter() - start
    worker.stop()
    thread.join()
    yard.close()
    return n, elapsed


def huey_sqlite(n: int) -> tuple[int, float]:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=fresh_sqlite())
    count = [0]
    lock = threading.Lock()
    done = threading.Event()

    @huey.task()
    def noop(i):
        with lock:
            count[0] += 1
            if count[0] >= n:
                done.set()

    consumer = huey.create_consumer(
        workers=4,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        backoff=1.0,
        max_delay=0.01,
    )
    consumer.start()
    start = time.perf_counter()
    for i in range(n):
        noop(i)
    done.wait(600)
    elapsed = time.perf_counter() - start
    consumer.stop(graceful=True)
    return n, elapsed


def procrastinate_pg(n: int) -> tuple[int, float]:
    import procrastinate

    with fresh_postgres() as url:
        app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=url))

        @app.task(name="noop")
        def noop(i):
            return None

        with app.open():
            app.schema_manager.apply_schema()
        worker_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        worker_app.task(name="noop")(lambda i: None)
        with app.open():
            start = time.perf_counter()
            for i in range(n):
                noop.defer(i=i)

        async def work():
            async with worker_app.open_async():
                await worker_app.run_worker_async(
                    wait=False, concurrency=4, install_signal_handlers=False
                )

        asyncio.run(work())
        return n, time.perf_counter() - start


def pgqueuer_pg(n: int) -> tuple[int, float]:
    import asyncpg
    import psycopg
    from pgqueuer import AsyncpgDriver, PsycopgDriver, Queries, QueueManager
    from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
    from pgqueuer.adapters.persistence.queries import SyncQueries
    from pgqueuer.domain.types import QueueExecutionMode

    with fresh_postgres() as url:

        async def install():
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await Queries(PsycopgDriver(conn)).install()
            await conn.close()

        asyncio.run(install())
        with psycopg.connect(url, autocommit=True) as conn:
            queries = SyncQueries(SyncPsycopgDriver(conn))
            start = time.perf_counter()
            for i in range(n):
                queries.enqueue("noop", str(i).encode())

        async def work():  # asyncpg: the driver pgqueuer recommends for its workers
            conn = await asyncpg.connect(url)
            qm = QueueManager(Queries(AsyncpgDriver(conn)))

            @qm.entrypoint("noop")
            async def noop(job):
                return None

            await qm.run(batch_size=10, mode=QueueExecutionMode.drain)
            await conn.close()

        asyncio.run(work())
        return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument(
        "--peers",
        default="huey,procrastinate,pgqueuer",
        help="which peers to run, comma-separated (batchyard always runs)",
    )
    args = parser.parse_args()
    n, r, peers = args.n, args.repeat, set(args.peers.split(","))

    def on_pg(fn):
        def run():
            with fresh_postgres() as url:
                return fn(url, n)

        return run

    # each side takes its turn run by run (see median_rates)
    if "huey" in peers:
        huey, ours = median_rates(
            [
                lambda: huey_sqlite(n),
                lambda: batchyard_run(f"sqlite:///{fresh_sqlite()}?synchronous=full", n),
            ],
            r,
        )
        print_table(
            f"SQLite, synchronous=FULL: {n} items, one call each -> no-op (items/s)",
            [
                ("huey SqliteHuey, 4 worker threads", huey, "peer"),
                ("batchyard, 4 worker threads", ours, "goal > 1"),
            ],
        )
    pg_peers = [
        (label, fn)
        for name, label, fn in (
            ("procrastinate", "procrastinate, concurrency 4", procrastinate_pg),
            ("pgqueuer", "pgqueuer (asyncpg), batch_size 10", pgqueuer_pg),
        )
        if name in peers
    ]
    if pg_peers:
        *theirs, ours = median_rates(
            [lambda fn=fn: fn(n) for _, fn in pg_peers] + [on_pg(batchyard_run)], r
        )
        print_table(
            f"PostgreSQL: {n} items, one call each -> no-op (items/s)",
            [
                *((label, rate, "peer") for (label, _), rate in zip(pg_peers, theirs, strict=True)),
                ("batchyard, 4 worker threads", ours, "goal > each peer"),
            ],
        )


if __name__ == "__main__":
    main()
