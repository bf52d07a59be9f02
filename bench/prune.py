"""How long a single add waits while maintenance prunes, on SQLite.

    python bench/prune.py [--repeat 3] [--batches 12120] [--items 140]

A store holds `--batches` completed batches of `--items` items each (1.7M item rows by
default; inserted directly, see `_history.py`), finished an hour ago. A yard with a retention
of one second starts a worker in a thread (as `batchyard serve` does), whose maintenance
task prunes them one second later, while another thread adds one item per call to a live
base as fast as it can. Printed per run: the prune's wall time (from its task being claimed
to the last old batch gone), the adds made meanwhile, and their p50, p99 and longest wait;
then the same adder for as long with nothing pruning (the machine's own noise: on a shared
machine a thread can wait for a core as long as for the writer), and, where the code prunes
in steps (`Pruner.step`), how long the steps took. Goal: the longest wait at most 50 ms.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import threading
import time

from _harness import fresh_sqlite
from _history import drained_history
from batchyard import Yard


def step_timer() -> list[float]:
    """Durations of `Pruner.step` calls from now on (none where the prune is one call)."""
    seconds: list[float] = []
    try:
        from batchyard.accumulator.pruning import Pruner
    except ImportError:
        return seconds
    original = Pruner.step

    def step(self: Pruner, older_than: float) -> object:
        start = time.perf_counter()
        try:
            return original(self, older_than)
        finally:
            seconds.append(time.perf_counter() - start)

    Pruner.step = step  # type: ignore[assignment,method-assign]
    return seconds


def summary(waits: list[float]) -> dict[str, float]:
    waits = sorted(waits)
    return {
        "adds": len(waits),
        "p50_ms": statistics.median(waits) * 1000,
        "p99_ms": waits[int(len(waits) * 0.99) - 1] * 1000,
        "max_ms": waits[-1] * 1000,
    }


def adding_alone(yard: Yard, seconds: float) -> dict[str, float]:
    waits = []
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        start = time.perf_counter()
        yard.add_items("alone", [{"n": n}], max_batch_size=10_000_000, on_flush="noop")
        waits.append(time.perf_counter() - start)
        n += 1
    return summary(waits)


def one_run(batches: int, items: int, steps: list[float]) -> dict[str, float]:
    path = fresh_sqlite()
    yard = Yard(f"sqlite:///{path}", retention=1.0)
    yard.handler("noop")(lambda items, ctx: None)
    drained_history(yard.store, "old", batches, items, completed_at=time.time() - 3600)
    watch = sqlite3.connect(path)

    def scalar(sql: str) -> int:
        return int(watch.execute(sql).fetchone()[0])

    waits: list[tuple[float, float]] = []  # (start, seconds)
    stop = threading.Event()

    def adder() -> None:
        n = 0
        while not stop.is_set():
            start = time.perf_counter()
            yard.add_items("live", [{"n": n}], max_batch_size=10_000_000, on_flush="noop")
            waits.append((start, time.perf_counter() - start))
            n += 1

    adding = threading.Thread(target=adder)
    adding.start()
    worker = yard.worker(concurrency=1, poll_interval=0.05)
    working = threading.Thread(target=worker.run)
    working.start()
    began = None
    while True:
        if began is None and scalar(
            "SELECT COUNT(*) FROM batchyard_tasks "
            "WHERE kind = 'maintenance.prune' AND state = 'running'"
        ):
            began = time.perf_counter()
        if not scalar("SELECT EXISTS (SELECT 1 FROM batchyard_batches WHERE base_id = 'old')"):
            break
        time.sleep(0.005)
    ended = time.perf_counter()
    # the old batches were numbered first: 1..batches
    left = scalar(f"SELECT COUNT(*) FROM batchyard_items WHERE batch_no <= {batches}")
    stop.set()
    adding.join()
    worker.stop()
    working.join()
    watch.close()
    # a prune of one transaction may begin and end between two looks: then its start is
    # the end of the longest add, which waited for it
    if began is None:
        began = ended
    window = [s for start, s in waits if start >= began - 1.0 and start <= ended]
    assert left == 0
    alone = adding_alone(yard, ended - began + 1.0)
    yard.close()
    run = {"prune_s": ended - began, **summary(window)}
    run.update({f"alone_{k}": v for k, v in alone.items()})
    if steps:
        run.update(
            steps=len(steps),
            step_p50_ms=statistics.median(steps) * 1000,
            step_max_ms=max(steps) * 1000,
        )
    steps.clear()
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12_120)
    parser.add_argument("--items", type=int, default=140)
    args = parser.parse_args()
    print(
        f"\n## prune of {args.batches:,} batches ({args.batches * args.items:,} item rows) "
        "on SQLite, a thread adding single items meanwhile\n"
    )
    print(
        "| run | prune wall s | adds meanwhile | p50 ms | p99 ms | **longest ms** "
        "| nothing pruning: p99 / longest ms | steps: count, p50 / longest ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    steps = step_timer()
    runs = [one_run(args.batches, args.items, steps) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for label, run in [*((str(n + 1), run) for n, run in enumerate(runs)), ("median", med)]:
        stepped = (
            f"{run['steps']:,.0f}, {run['step_p50_ms']:.1f} / {run['step_max_ms']:.1f}"
            if "steps" in run
            else "one call"
        )
        print(
            f"| {label} | {run['prune_s']:.2f} | {run['adds']:,.0f} | {run['p50_ms']:.2f} | "
            f"{run['p99_ms']:.2f} | **{run['max_ms']:.1f}** | {run['alone_p99_ms']:.2f} / "
            f"{run['alone_max_ms']:.1f} | {stepped} |"
        )


if __name__ == "__main__":
    main()
