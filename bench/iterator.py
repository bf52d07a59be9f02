"""The table iterator against a bare keyset scan of the same table, in one run.

    python bench/iterator.py [--repeat 3] [--rows 1000000]
    python bench/iterator.py --parallel [--repeat 3] [--rows 1000000]

Both page by (at, id) in pages of 1,000. The bare scan commits a checkpoint (the last key)
after every page, as the iterator does; the iterator runs with a no-op handler through the
worker (`run_worker(wait=False)`), one durable step per page. Also printed: the time per page
over the first and the last tenth of the job, to show the cost per page stays flat, and the
CPU time of this process per page (the load of a shared machine moves it less than a rate).

With --parallel: the same table through one `batchyard worker` process at its default
concurrency (8), with a handler that sleeps 2 ms a page (I/O-bound), `parallelism=4`
against 1, run by run in turns; a run's time is from the start to the job's completion.
Where /proc is there (Linux), the worker process's CPU time per page is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _harness import (
    fresh_postgres,
    fresh_sqlite,
    median_rates,
    print_table,
    start_worker,
    stop_workers,
)
from batchyard import Yard
from batchyard.sources import sql_keyset

PAGE = 1000


def fill(yard: Yard, rows: int) -> None:
    with yard.store.transaction() as tx:
        tx.execute(
            "CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, at DOUBLE PRECISION "
            "NOT NULL, body TEXT NOT NULL)"
        )
        tx.execute("CREATE INDEX bench_rows_at ON bench_rows (at, id)")
        tx.execute("CREATE TABLE bench_checkpoint (at DOUBLE PRECISION, id BIGINT)")
        tx.execute("INSERT INTO bench_checkpoint VALUES (NULL, NULL)")
        tx.executemany(
            "INSERT INTO bench_rows VALUES (:id, :at, 'payload-payload')",
            [{"id": n, "at": float(n // 100)} for n in range(rows)],
        )
        tx.execute("ANALYZE")


def bare_scan(yard: Yard, rows: int) -> tuple[int, float]:
    start, done, last = time.perf_counter(), 0, None
    while True:
        with yard.store.transaction() as tx:
            if last is None:
                page = tx.all(
                    "SELECT id, at, body FROM bench_rows ORDER BY at, id LIMIT :n", {"n": PAGE}
                )
            else:
                page = tx.all(
                    "SELECT id, at, body FROM bench_rows WHERE "
                    + yard.store.keyset("at", "id", ">", "at", "id")
                    + " ORDER BY at, id LIMIT :n",
                    {"at": last[0], "id": last[1], "n": PAGE},
                )
            if not page:
                break
            last = (page[-1]["at"], page[-1]["id"])
            tx.execute(
                "UPDATE bench_checkpoint SET at = :at, id = :id", {"at": last[0], "id": last[1]}
            )
            done += len(page)
    assert done == rows
    return rows, time.perf_counter() - start


def iterator_run(
    yard: Yard, rows: int, job: str, pages: list[float], cpu: list[float]
) -> tuple[int, float]:
    yard.start_iterator(
        job,
        batch_size=PAGE,
        get_next_batch="bench-src",
        process_batch="noop",
        delay_between_batches=0,
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    yard.run_worker(concurrency=1, wait=False)
    elapsed = time.perf_counter() - start
    cpu.append((time.process_time() - cpu_start) / (rows / PAGE))
    status = yard.get_iterator_status(job)
    assert status.processed == rows and status.status == "completed", status
    return rows, elapsed


def measure(url: str, label: str, rows: int, repeat: int) -> None:
    yard = Yard(url)
    fill(yard, rows)
    sql_keyset(yard, "bench-src", table="bench_rows", order_by="at", tie_breaker="id")
    stamps: list[float] = []
    cpu: list[float] = []

    @yard.handler("noop")
    def noop(items, ctx):
        stamps.append(time.perf_counter())

    runs = iter(range(repeat))
    # the two take turns run by run (see median_rates)
    bare, ours = median_rates(
        [
            lambda: bare_scan(yard, rows),
            lambda: iterator_run(yard, rows, f"j{next(runs)}", stamps, cpu),
        ],
        repeat,
    )
    print_table(
        f"{label}: {rows:,} rows in pages of {PAGE:,} (rows/s)",
        [
            ("bare keyset scan + checkpoint per page", bare, "the baseline"),
            ("iterator, no-op handler", ours, "goal >= 0.5"),
        ],
    )
    per_page = [
        b - a for a, b in zip(stamps[-rows // PAGE :], stamps[-rows // PAGE + 1 :], strict=False)
    ]
    tenth = max(1, len(per_page) // 10)
    first, last = per_page[:tenth], per_page[-tenth:]
    print(
        f"- time per page, last run: first tenth {1000 * sum(first) / len(first):.2f} ms, "
        f"last tenth {1000 * sum(last) / len(last):.2f} ms"
    )
    print(f"- CPU of this process per page, median: {1000 * statistics.median(cpu):.2f} ms")
    yard.close()


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used so far, where /proc tells (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parallel_run(
    yard: Yard, rows: int, job: str, parallelism: int, page: int, worker: int, cpu: list[float]
) -> tuple[int, float]:
    cpu_start = cpu_seconds(worker)
    yard.start_iterator(
        job,
        batch_size=page,
        get_next_batch="bench-src",
        process_batch="sleep-2ms",
        delay_between_batches=0,
        parallelism=parallelism,
    )
    while (status := yard.get_iterator_status(job)).completed_at is None:
        assert status.status in ("pending", "running"), status
        time.sleep(0.02)
    assert status.processed == rows and status.status == "completed", status
    cpu_end = cpu_seconds(worker)
    if cpu_start is not None and cpu_end is not None:
        cpu.append((cpu_end - cpu_start) / (rows / page))
    return rows, (status.completed_at - status.started_at).total_seconds()


def workers_up(yard: Yard) -> bool:
    with yard.store.transaction(write=False) as tx:
        return tx.one("SELECT COUNT(*) AS n FROM batchyard_workers")["n"] > 0


def measure_parallel(url: str, label: str, rows: int, repeat: int, page: int) -> None:
    yard = Yard(url)
    fill(yard, rows)
    sql_keyset(yard, "bench-src", table="bench_rows", order_by="at", tie_breaker="id")
    yard.handler("sleep-2ms")(lambda items, ctx: None)  # the worker process runs the real one
    worker = start_worker(url, "_noop_app:yard")
    try:
        while not workers_up(yard):  # its start-up is not the first run's time
            time.sleep(0.05)
        runs = iter(range(2 * repeat))
        cpu: dict[int, list[float]] = {1: [], 4: []}
        one, four = median_rates(
            [
                lambda: parallel_run(yard, rows, f"p{next(runs)}", 1, page, worker.pid, cpu[1]),
                lambda: parallel_run(yard, rows, f"p{next(runs)}", 4, page, worker.pid, cpu[4]),
            ],
            repeat,
        )
    finally:
        stop_workers([worker])
    goal = "goal >= 3" if label == "PostgreSQL" else "goal >= 2.5"
    print_table(
        f"{label}: {rows:,} rows in pages of {page:,}, 2 ms a page, one worker (rows/s)",
        [("parallelism=1", one, "the baseline"), ("parallelism=4", four, goal)],
    )
    if cpu[1] and cpu[4]:
        print(
            "- the worker's CPU per page, median: "
            f"parallelism=1 {1000 * statistics.median(cpu[1]):.2f} ms, "
            f"parallelism=4 {1000 * statistics.median(cpu[4]):.2f} ms"
        )
    yard.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parallel", action="store_true", help="parallelism 4 against 1")
    parser.add_argument("--page", type=int, default=PAGE, help="page size (--parallel)")
    args = parser.parse_args()
    if args.parallel:
        sqlite = f"sqlite:///{fresh_sqlite()}"
        measure_parallel(sqlite, "SQLite", args.rows, args.repeat, args.page)
        with fresh_postgres() as url:
            measure_parallel(url, "PostgreSQL", args.rows, args.repeat, args.page)
        return
    measure(f"sqlite:///{fresh_sqlite()}", "SQLite", args.rows, args.repeat)
    with fresh_postgres() as url:
        measure(url, "PostgreSQL", args.rows, args.repeat)


if __name__ == "__main__":
    main()
