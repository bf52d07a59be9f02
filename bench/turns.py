"""An application's single adds while a worker process writes back to back, on SQLite.

One `batchyard worker` process runs a transactional iterator (its 2 ms handler inside each
page's transaction, so the worker holds SQLite's one writer nearly all the time), with one
slice or four; meanwhile this process adds one item at a time, every 10 ms, and times each
add. Printed: the adds' wait (p50 / p99 / max), the pages the iterator ran meanwhile, and
the same with no iterator running (the floor). Between processes SQLite has only its busy
handler, which sleeps 100 ms at a time; `batchyard.store.turns` makes a process about to
write let a waiting one go first.

    .venv/bin/python bench/turns.py --repeat 3

With `--against SRC` (another checkout's `src`, say the code before a change) each run is
made once with that code and once with this one, taking turns, each in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import start_worker, stop_workers
from batchyard import Yard
from batchyard.sources import sql_keyset
from iterator import fill

ROWS = 600_000
PAGE = 100


def adds(yard: Yard, seconds: float) -> list[float]:
    waits, n = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        yard.add_items("app", [{"n": n}], max_batch_size=10_000_000, on_flush="noop")
        waits.append(time.perf_counter() - start)
        n += 1
        time.sleep(0.01)
    return waits


def one_run(parallelism: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'turns.db'}"
        yard = Yard(url)
        fill(yard, ROWS)
        sql_keyset(yard, "bench-src", table="bench_rows", order_by="at", tie_breaker="id")
        yard.handler("noop")(lambda items, ctx: None)
        yard.handler("sleep-2ms")(lambda items, ctx: None)  # the worker process runs the real one
        worker = start_worker(url, "_noop_app:yard")
        try:
            if parallelism:
                yard.start_iterator(
                    "busy",
                    batch_size=PAGE,
                    get_next_batch="bench-src",
                    process_batch="sleep-2ms",
                    delay_between_batches=0,
                    parallelism=parallelism,
                    transactional=True,
                )
                while yard.get_iterator_status("busy").processed < 10 * PAGE:
                    time.sleep(0.01)
            before = yard.get_iterator_status("busy").processed if parallelism else 0
            started = time.monotonic()
            waits = adds(yard, seconds)
            after = yard.get_iterator_status("busy") if parallelism else None
            elapsed = time.monotonic() - started  # more than `seconds` when an add waited
        finally:
            stop_workers([worker])
    if after is not None and after.completed_at is not None:
        print("the iterator ended before the adds did: raise ROWS", file=sys.stderr)
    waits.sort()
    return {
        "p50_ms": statistics.median(waits) * 1000,
        "p99_ms": waits[int(len(waits) * 0.99)] * 1000,
        "max_ms": waits[-1] * 1000,
        "pages_per_s": ((after.processed if after else 0) - before) / PAGE / elapsed,
    }


def run_with(src: str, parallelism: int, seconds: float) -> dict[str, float]:
    """One run in a process of its own, on the batchyard in `src`."""
    path = os.pathsep.join([src, str(Path(__file__).parent)])
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(parallelism), "--seconds", str(seconds)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--against", metavar="SRC", help="another batchyard's src, in turns")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one, args.seconds)))
        return
    import batchyard

    sides = {"this code": str(Path(batchyard.__file__).parent.parent)}
    if args.against:
        sides["--against"] = args.against
    for parallelism in (0, 1, 4):
        label = f"iterator, {parallelism} slice(s)" if parallelism else "no iterator"
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for _ in range(args.repeat):
            for side, src in sides.items():  # the sides take turns, run by run
                runs[side].append(run_with(src, parallelism, args.seconds))
        for side, done in runs.items():
            med = {k: statistics.median(r[k] for r in done) for k in done[0]}
            print(
                f"{label}, {side}: an add's wait p50 {med['p50_ms']:.1f} ms, "
                f"p99 {med['p99_ms']:.1f} ms, max {med['max_ms']:.0f} ms (runs: "
                + ", ".join(f"{r['max_ms']:.0f}" for r in done)
                + f"); the iterator's pages/s {med['pages_per_s']:.0f}"
            )


if __name__ == "__main__":
    main()
