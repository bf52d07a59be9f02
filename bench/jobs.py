"""Bulk jobs against the raw limit of the same store, in one run.

    python bench/jobs.py [--repeat 3] [--things 1000000] [--only import|export]

Import: a job of N things (validation, chunk tasks, fenced chunk commits with progress,
run by the in-process worker until the job is done) against a raw `executemany` upsert of
the same rows, 10,000 per transaction. Export: `export_to_format` (NDJSON and CSV) against
a raw dump of the same rows from the same store - orjson per row, or csv.writer over the
row tuples - each read in one pass; rows/s (time for the same rows) and MB/s of each.
`--only export` loads the things with the raw upsert instead of a job, to measure the
exports without waiting for the job.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import time

import orjson
import psycopg

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table, timed
from batchyard import Yard
from batchyard.bulk.things import THING_COLUMNS, UPSERT_THINGS


def things(n: int, ns: str) -> list[dict]:
    return [
        {
            "ns": ns,
            "id": f"thing-{i:07}",
            "type": "Product",
            "data": {"name": f"widget {i}", "price": i % 1000, "tags": ["a", "b"]},
            "content": "a high-quality widget",
            "visibility": "public",
        }
        for i in range(n)
    ]


def raw_import(yard: Yard, items: list[dict]) -> int:
    # the same rows with only what storing them needs (data as JSON text); no validation
    rows = [
        {
            "type": None,
            "content": None,
            "visibility": None,
            **item,
            "data": orjson.dumps(item.get("data", {})).decode(),
        }
        for item in items
    ]
    for start in range(0, len(rows), 10_000):
        with yard.store.transaction() as tx:
            tx.executemany(UPSERT_THINGS, rows[start : start + 10_000])
    return len(rows)


def job_import(yard: Yard, items: list[dict]) -> int:
    job_id = yard.create_batch_job("import-things", items)
    yard.run_worker(concurrency=2, wait=False)
    job = yard.get_batch_job(job_id)
    assert job.status == "completed" and job.processed == len(items), job
    return len(items)


def raw_ndjson(yard: Yard, ns: str) -> int:
    size = 0
    with yard.store.snapshot() as tx:
        for row in tx.stream(
            f"SELECT {THING_COLUMNS} FROM batchyard_things WHERE ns = :ns ORDER BY id", {"ns": ns}
        ):
            size += len(orjson.dumps(row) + b"\n")
    return size


def raw_csv(yard: Yard, ns: str) -> int:
    size, buffer = 0, io.StringIO()
    out = csv.writer(buffer)
    with yard.store.snapshot() as tx:
        for row in tx.stream(
            f"SELECT {THING_COLUMNS} FROM batchyard_things WHERE ns = :ns ORDER BY id", {"ns": ns}
        ):
            out.writerow(row)
            if buffer.tell() > 65536:
                size += len(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
    return size + len(buffer.getvalue().encode())


def ours(yard: Yard, ns: str, format: str) -> int:
    return sum(len(chunk) for chunk in yard.export_to_format(ns, format))


def export_rates(fns, rows: int, repeat: int) -> list[tuple[dict[str, float], float]]:
    """For each of `fns` (returning the bytes it wrote): rows/s over `repeat` runs, taken in
    turns (`median_rates`), and the median MB/s of its output."""
    mb_per_second: list[list[float]] = [[] for _ in fns]

    def measured(fn, mb):
        def run() -> tuple[int, float]:
            size, seconds = timed(fn)
            mb.append(size / seconds / 1e6)
            return rows, seconds

        return run

    rates = median_rates(
        [measured(fn, mb) for fn, mb in zip(fns, mb_per_second, strict=True)], repeat
    )
    return [(rate, statistics.median(mb)) for rate, mb in zip(rates, mb_per_second, strict=True)]


def measure(url: str, label: str, n: int, repeat: int, only: str | None) -> None:
    yard = Yard(url)
    if only != "export":
        ns = measure_import(yard, label, n, repeat)
    else:
        ns = "loaded"
        raw_import(yard, things(n, ns))
    if only != "import":
        measure_export(yard, label, n, repeat, ns)
    yard.close()


def measure_import(yard: Yard, label: str, n: int, repeat: int) -> str:
    """Print the import table; the namespace the last job imported."""
    runs = iter(range(100))
    # the two take turns run by run (see median_rates); each run imports a new namespace
    raw, ours = median_rates(
        [
            lambda: timed(lambda: raw_import(yard, things(n, f"raw{next(runs)}"))),
            lambda: timed(lambda: job_import(yard, things(n, f"job{next(runs)}"))),
        ],
        repeat,
    )
    print_table(
        f"{label}: import of {n:,} things (things/s)",
        [
            ("raw executemany upsert, 10k rows per commit", raw, "the baseline"),
            ("import-things job, in-process worker", ours, "goal >= 0.5"),
        ],
    )
    return f"job{next(runs) - 1}"  # the job ran last in each turn


def measure_export(yard: Yard, label: str, n: int, repeat: int, ns: str) -> None:
    if yard.store.dialect == "postgres":
        # export a settled table, as one that was not just written: the import's dead
        # tuples vacuumed and its statistics fresh, instead of an autovacuum starting midway
        with psycopg.connect(yard.store.url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) batchyard_things")
    for format, raw in (("ndjson", raw_ndjson), ("csv", raw_csv)):
        # the two outputs differ in size (ISO times, flattened CSV columns): the ratio is
        # of rows per second - time for the same rows - and the MB/s of each is shown too
        (raw_rate, raw_mb), (our_rate, our_mb) = export_rates(
            [lambda raw=raw: raw(yard, ns), lambda format=format: ours(yard, ns, format)], n, repeat
        )
        print_table(
            f"{label}: {format.upper()} export of {n:,} things (rows/s)",
            [
                (
                    f"raw {'orjson' if format == 'ndjson' else 'csv.writer'} dump of the rows",
                    raw_rate,
                    f"the baseline; {raw_mb:.1f} MB/s",
                ),
                (f"export_to_format(ns, {format!r})", our_rate, f"goal >= 0.7; {our_mb:.1f} MB/s"),
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--things", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("import", "export"))
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    started = time.perf_counter()
    stores = args.stores.split(",")
    if "sqlite" in stores:
        measure(f"sqlite:///{fresh_sqlite()}", "SQLite", args.things, args.repeat, args.only)
    if "postgres" in stores:
        with fresh_postgres() as url:
            measure(url, "PostgreSQL", args.things, args.repeat, args.only)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
