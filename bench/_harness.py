"""Shared by the benchmarks: medians of repeated runs, fresh stores, worker processes, a
table of ratios."""

from __future__ import annotations

import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

HERE = Path(__file__).parent
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


def start_worker(
    url: str, app: str = "_noop_app:yard", *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A `batchyard worker` process on `url` running `app` (a module of this folder) with the
    batchyard this process runs (a PYTHONPATH given); its warnings and errors on stderr. It
    is sent SIGTERM when this process dies (Linux), so that a bench killed midway leaves no
    worker running on."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "batchyard", "worker", "--app", app, *options]
    return subprocess.Popen(
        [*command, "--log-level", "warning"],
        env={**os.environ, "BATCHYARD_STORE": url, "PYTHONPATH": path, **(env or {})},
        stdout=subprocess.DEVNULL,  # it only says how many tasks it ran
        preexec_fn=_die_with_parent,
    )


def stop_workers(workers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, then wait for all (they stop together, not one after another)."""
    workers = list(workers)
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.wait()


def _die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
