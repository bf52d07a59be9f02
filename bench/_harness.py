"""Shared by the benchmarks: medians of repeated runs, fresh stores, a table of ratios."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

PG_ADMIN_URL = os.environ.get(
    "BATCHYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def median_rate(run: Callable[[], tuple[int, float]], repeat: int) -> dict[str, float]:
    """Call `run` (returning items, seconds) `repeat` times: median, min and max items/s."""
    return median_rates([run], repeat)[0]


def median_rates(
    runs: Sequence[Callable[[], tuple[int, float]]], repeat: int
) -> list[dict[str, float]]:
    """`median_rate` of each of `runs`, measured in turns (a, b, c, a, b, c ...): a drift of
    the shared machine - another load, a checkpoint - then weighs on each alike, where
    all of a's runs followed by all of b's would put it on one side of the ratio."""
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, done in zip(runs, rates, strict=True):
            items, seconds = run()
            done.append(items / seconds)
    return [
        {"median": statistics.median(done), "min": min(done), "max": max(done)} for done in rates
    ]


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    items = fn()
    return items, time.perf_counter() - start


def fresh_sqlite() -> str:
    """A path for a new SQLite file."""
    return os.path.join(tempfile.mkdtemp(prefix="batchyard-bench-"), "bench.db")


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; yields its URL."""
    name = f"batchyard_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def print_table(title: str, rows: list[tuple[str, dict[str, float] | None, str]]) -> None:
    """Rows of (label, rate or None, note); the ratio column is against the first row."""
    print(f"\n## {title}\n")
    print(f"| {'what':<46} | {'median/s':>10} | {'min..max':>19} | {'ratio':>6} | note")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 21}|{'-' * 8}|-----")
    base = rows[0][1]["median"] if rows and rows[0][1] else None
    for label, rate, note in rows:
        if rate is None:
            print(f"| {label:<46} | {'-':>10} | {'-':>19} | {'-':>6} | {note}")
            continue
        ratio = f"{rate['median'] / base:.2f}" if base else "-"
        spread = f"{rate['min']:,.0f}..{rate['max']:,.0f}"
        print(f"| {label:<46} | {rate['median']:>10,.0f} | {spread:>19} | {ratio:>6} | {note}")
