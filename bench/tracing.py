"""Tracing on vs off: what OpenTelemetry spans cost an add and a flush.

    python bench/tracing.py [--repeat 7] [--calls 2000] [--bulk-calls 200]
                             [--stores sqlite,postgres]

Each run is a fresh process on a fresh store, in one of three modes, the modes taking turns
run by run:

- ``off``: the OpenTelemetry API installed, no tracer provider configured (batchyard's
  spans are the API's no-ops; nothing is stored with the items) - the baseline;
- ``on``: the SDK's `TracerProvider`, every span sampled and exported at its end to an
  `InMemorySpanExporter` (`SimpleSpanProcessor`): each add stores its traceparent with its
  items, each flush links to up to 32 adds;
- ``absent``: no OpenTelemetry at all (as without the ``batchyard[otel]`` extra).

A run times `--calls` single-item adds (one statement each), then `--bulk-calls` adds of 100
items, then the drain of every batch they filled (batches of 100: those of the single adds
link to 32 adds each, those of the bulk adds to one) by `run_worker(wait=False)`. Prints
medians (min..max) and each mode's cost against ``off``'s (time per call, item or batch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from _harness import fresh_postgres, fresh_sqlite

HERE = Path(__file__).parent
MODES = ("off", "on", "absent")
PARTS = (
    ("single", "add of 1 item (calls/s)"),
    ("bulk", "add of 100 items (items/s)"),
    ("drain", "flush, batches of 100 (batches/s)"),
)


def child(mode: str, url: str, calls: int, bulk_calls: int) -> None:
    """One run, in this process: print the rates of each part as JSON."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif mode == "on":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    sys.path.insert(0, str(HERE.parent / "src"))
    from batchyard import Yard

    item = {"payload": "x" * 40}
    yard = Yard(url)
    yard.handler("noop")(lambda items, ctx: None)
    yard.add_items("warm", [item], max_batch_size=100, on_flush="noop")
    rates, cpu = {}, {}

    def timed(part: str, units: int, work) -> None:
        began, cpu_began = time.perf_counter(), time.process_time()
        work()
        rates[part] = units / (time.perf_counter() - began)
        cpu[part] = (time.process_time() - cpu_began) / units

    def singles() -> None:
        for i in range(calls):
            yard.add_items("single", [{"i": i, **item}], max_batch_size=100, on_flush="noop")

    bulk = [{"i": i, **item} for i in range(100)]

    def bulks() -> None:
        for _ in range(bulk_calls):
            yard.add_items("bulk", bulk, max_batch_size=100, on_flush="noop")

    batches = calls // 100 + bulk_calls
    timed("single", calls, singles)
    timed("bulk", bulk_calls * 100, bulks)
    timed("drain", batches, lambda: yard.run_worker(wait=False))
    if mode == "on":
        flushes = [s for s in exporter.get_finished_spans() if s.name == "batchyard.flush"]
        assert len(flushes) == batches and flushes[0].links, "tracing is not on"
    yard.close()
    print(json.dumps({"rates": rates, "cpu": cpu}))


def run(mode: str, url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, str(args.calls), str(args.bulk_calls)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
    measured: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--bulk-calls", type=int, default=200)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, url, calls, bulk_calls = args.child
        child(mode, url, int(calls), int(bulk_calls))
        return
    for store in args.stores.split(","):
        seen: dict[str, dict[str, list[float]]] = {m: {p: [] for p, _ in PARTS} for m in MODES}
        cpu: dict[str, dict[str, list[float]]] = {m: {p: [] for p, _ in PARTS} for m in MODES}
        for _ in range(args.repeat):
            for mode in MODES:  # in turns: a drift of the machine weighs on each alike
                with ExitStack() as stack:
                    if store == "sqlite":
                        url = "sqlite:///" + fresh_sqlite()
                    else:
                        url = stack.enter_context(fresh_postgres())
                    measured = run(mode, url, args)
                    for part, rate in measured["rates"].items():
                        seen[mode][part].append(rate)
                        cpu[mode][part].append(measured["cpu"][part])
        print(f"\n## {store}: tracing on vs off ({args.repeat} runs each, in turns)\n")
        print(f"| {'part':<36} | {'mode':<6} | {'median':>9} | {'min..max':>19} | cost vs off")
        print(f"|{'-' * 38}|{'-' * 8}|{'-' * 11}|{'-' * 21}|------")
        for part, label in PARTS:
            base = statistics.median(seen["off"][part])
            for mode in MODES:
                rates = seen[mode][part]
                median = statistics.median(rates)
                spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
                print(
                    f"| {label:<36} | {mode:<6} | {median:>9,.0f} | {spread:>19} | "
                    f"{base / median:.3f}"
                )
        print("\ncost vs off: time per call, item or batch against off's (off's median rate /")
        print("this mode's); the goal for on is 1.10 at most")
        # the wall clock of a store whose commits wait for a disk varies more from run to run
        # than tracing costs; the CPU this process spent (the server's is not counted) does not
        print(
            f"\n| {'CPU of this process per call, item or batch':<44} | {'mode':<6} | "
            f"{'median us':>9} | cost vs off"
        )
        print(f"|{'-' * 46}|{'-' * 8}|{'-' * 11}|------")
        for part, label in PARTS:
            label = label.split(" (")[0]
            base = statistics.median(cpu["off"][part])
            for mode in MODES:
                median = statistics.median(cpu[mode][part])
                print(f"| {label:<44} | {mode:<6} | {1e6 * median:>9,.1f} | {median / base:.3f}")


if __name__ == "__main__":
    main()
