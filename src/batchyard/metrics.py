"""Prometheus metrics: what the process did, and what the store holds.

Counters and histograms of this process (flushes by reason and outcome, items flushed, flush
and task durations, retries, dead letters, producer writes, outages), counted where the work
happens. They live in the default registry as well, so an application that already serves
its own metrics gets them for free. The gauges read from the store at scrape time are the
HTTP side's (`batchyard.http.store_metrics`).

Names carry the ``batchyard_`` prefix and durations are in seconds.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# flushes call user code that may take from milliseconds to minutes
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

FLUSHES = Counter(
    "batchyard_flushes",
    "Flush attempts recorded, by reason and outcome.",
    ["reason", "outcome"],
    registry=None,
)
FLUSHED_ITEMS = Counter(
    "batchyard_flushed_items", "Items delivered by flushes, by reason.", ["reason"], registry=None
)
FLUSH_DURATION = Histogram(
    "batchyard_flush_duration_seconds",
    "Time a flush handler took, by outcome.",
    ["outcome"],
    buckets=_DURATION_BUCKETS,
    registry=None,
)
TASK_DURATION = Histogram(
    "batchyard_task_duration_seconds",
    "Time a worker spent on one task, by kind.",
    ["kind"],
    buckets=_DURATION_BUCKETS,
    registry=None,
)
TASK_RETRIES = Counter(
    "batchyard_task_retries",
    "Tasks queued again after a failure, by kind.",
    ["kind"],
    registry=None,
)
TASK_DEAD_LETTERS = Counter(
    "batchyard_task_dead_letters",
    "Tasks moved to the dead letters, by kind.",
    ["kind"],
    registry=None,
)
PRODUCER_WRITE_DURATION = Histogram(
    "batchyard_producer_write_duration_seconds",
    "Time one write-behind producer transaction took.",
    buckets=_DURATION_BUCKETS,
    registry=None,
)
PRODUCER_WRITE_FAILURES = Counter(
    "batchyard_producer_write_failures",
    "Write-behind producer transactions that failed.",
    registry=None,
)
OUTAGES = Counter(
    "batchyard_outages",
    "Runs of failures this process rode through (the store unavailable, full "
    "or read-only; or an unexpected error), by the part that met them.",
    ["component"],
    registry=None,
)
WORKER_LOOP_AGE = Gauge(
    "batchyard_worker_loop_age_seconds",
    "Seconds since this process's worker loop last completed a cycle "
    "(NaN without a running worker).",
    registry=None,
)
WORKER_LOOP_AGE.set(float("nan"))

PROCESS_METRICS = (
    FLUSHES,
    FLUSHED_ITEMS,
    FLUSH_DURATION,
    TASK_DURATION,
    TASK_RETRIES,
    TASK_DEAD_LETTERS,
    PRODUCER_WRITE_DURATION,
    PRODUCER_WRITE_FAILURES,
    OUTAGES,
    WORKER_LOOP_AGE,
)
for _metric in PROCESS_METRICS:
    REGISTRY.register(_metric)


def flush_recorded(reason: str, outcome: str, delivered: int, duration: float) -> None:
    """Count one recorded flush attempt (after its outcome committed)."""
    FLUSHES.labels(reason, outcome).inc()
    if delivered:
        FLUSHED_ITEMS.labels(reason).inc(delivered)
    FLUSH_DURATION.labels(outcome).observe(duration)
