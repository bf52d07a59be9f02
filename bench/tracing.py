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
    rates = {}
    began = time.perf_counter()
    for i in range(calls):
        yard.add_items("single", [{"i": i, **item}], max_batch_size=100, on_flush="noop")
    rates["single"] = calls / (time.perf_counter() - began)
    bulk = [{"i": i, **item} for i in range(100)]
    began = time.perf_counter()
    for _ in range(bulk_calls):
        yard.add_items("bulk", bulk, max_batch_size=100, on_flush="noop")
    rates["bulk"] = bulk_calls * 100 / (time.perf_counter() - began)
    batches = calls // 100 + bulk_calls
    began = time.perf_counter()
    yard.run_worker(wait=False)
    rates["drain"] = batches / (time.perf_counter() - began)
    if mode == "on":
        flushes = [s for s in exporter.get_finished_spans() if s.name == "batchyard.flush"]
        assert len(flushes) == batches and flushes[0].links, "tracing is not on"
    yard.close()
    print(json.dumps(rates))


def run(mode: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, str(args.calls), str(args.bulk_calls)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
    rates: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return rates


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
        for _ in range(args.repeat):
            for mode in MODES:  # in turns: a drift of the machine weighs on each alike
                with ExitStack() as stack:
                    if store == "sqlite":
                        url = "sqlite:///" + fresh_sqlite()
                    else:
                        url = stack.enter_context(fresh_postgres())
                    for part, rate in run(mode, url, args).items():
                        seen[mode][part].append(rate)
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


if __name__ == "__main__":
    main()
