"""Prometheus metrics: what the process did, and what the store holds.

Two kinds, kept apart on purpose:

- counters and histograms of this process (flushes by reason and outcome, items flushed,
  flush and task durations, retries, dead letters, producer writes), counted where the work
  happens. They live in the default registry as well, so an application that already serves
  its own metrics gets them for free.
- gauges read from the store at scrape time by `StoreCollector` (pending items, tasks by
  kind and state, oldest pending work, dead letters, iterator jobs, aggregator lag, worker
  heartbeats). They describe every process sharing the store, so they are never counted in
  memory: a scrape of any one server shows the truth of all of them.

Names carry the ``batchyard_`` prefix and durations are in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchyard.errors import BatchyardError

if TYPE_CHECKING:
    from batchyard.yard import Yard

log = logging.getLogger("batchyard.metrics")

# flushes call user code that may take from milliseconds to minutes
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

FLUSHES = Counter("batchyard_flushes", "Flush attempts recorded, by reason and outcome.",
                  ["reason", "outcome"], registry=None)
FLUSHED_ITEMS = Counter("batchyard_flushed_items", "Items delivered by flushes, by reason.",
                        ["reason"], registry=None)
FLUSH_DURATION = Histogram("batchyard_flush_duration_seconds",
                           "Time a flush handler took, by outcome.", ["outcome"],
                           buckets=_DURATION_BUCKETS, registry=None)
TASK_DURATION = Histogram("batchyard_task_duration_seconds",
                          "Time a worker spent on one task, by kind.", ["kind"],
                          buckets=_DURATION_BUCKETS, registry=None)
TASK_RETRIES = Counter("batchyard_task_retries", "Tasks queued again after a failure, by kind.",
                       ["kind"], registry=None)
TASK_DEAD_LETTERS = Counter("batchyard_task_dead_letters",
                            "Tasks moved to the dead letters, by kind.", ["kind"],
                            registry=None)
PRODUCER_WRITE_DURATION = Histogram("batchyard_producer_write_duration_seconds",
                                    "Time one write-behind producer transaction took.",
                                    buckets=_DURATION_BUCKETS, registry=None)
PRODUCER_WRITE_FAILURES = Counter("batchyard_producer_write_failures",
                                  "Write-behind producer transactions that failed.",
                                  registry=None)
OUTAGES = Counter("batchyard_outages",
                  "Runs of failures this process rode through (the store unavailable, full "
                  "or read-only; or an unexpected error), by the part that met them.",
                  ["component"], registry=None)
WORKER_LOOP_AGE = Gauge("batchyard_worker_loop_age_seconds",
                        "Seconds since this process's worker loop last completed a cycle "
                        "(NaN without a running worker).", registry=None)
WORKER_LOOP_AGE.set(float("nan"))

PROCESS_METRICS = (FLUSHES, FLUSHED_ITEMS, FLUSH_DURATION, TASK_DURATION, TASK_RETRIES,
                   TASK_DEAD_LETTERS, PRODUCER_WRITE_DURATION, PRODUCER_WRITE_FAILURES,
                   OUTAGES, WORKER_LOOP_AGE)
for _metric in PROCESS_METRICS:
    REGISTRY.register(_metric)


class StoreCollector(Collector):
    """Gauges computed from the store on every scrape (one read transaction)."""

    def __init__(self, yard: Yard) -> None:
        # imported here: the core imports this module to count, so it must not import
        # the core back at load time
        from batchyard.overview import Overview

        self.overview = Overview.of(yard)

    def describe(self) -> list[Metric]:
        # collect() reads the store: never at registration time
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("batchyard_store_up",
                               "1 when the store answered this scrape, else 0.")
        try:
            snap = self.overview.snapshot()
        except BatchyardError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        batches = _gauge("batchyard_batches", "Batches by status.", ["status"])
        for status, n in sorted(snap.batches.items()):
            batches.add_metric([status], n)
        yield batches
        pending = _gauge("batchyard_pending_items",
                         "Items not yet delivered, by the status of their batch.", ["status"])
        for status in ("accumulating", "flushing", "dead"):
            pending.add_metric([status], snap.pending_items.get(status, 0))
        yield pending
        yield _single("batchyard_oldest_pending_age_seconds",
                      "Age of the oldest batch not yet delivered (0 when none).",
                      snap.oldest_pending_age_seconds or 0.0)
        yield _single("batchyard_oldest_due_task_age_seconds",
                      "How long the longest-waiting due task has waited for a worker.",
                      snap.oldest_due_task_age_seconds or 0.0)

        tasks = _gauge("batchyard_tasks", "Live tasks by kind and state.", ["kind", "state"])
        stuck = _gauge("batchyard_tasks_stuck",
                       "Running tasks whose lease expired (their worker is gone).", ["kind"])
        stuck_by_kind: dict[str, int] = {}
        for count in snap.tasks:
            tasks.add_metric([count.kind, count.state], count.count)
            stuck_by_kind[count.kind] = stuck_by_kind.get(count.kind, 0) + count.stuck
        for kind, n in sorted(stuck_by_kind.items()):
            stuck.add_metric([kind], n)
        yield tasks
        yield stuck
        dead = _gauge("batchyard_dead_letters", "Dead-lettered tasks, by kind.", ["kind"])
        for kind, n in sorted(snap.dead_tasks.items()):
            dead.add_metric([kind], n)
        yield dead

        iterators = _gauge("batchyard_iterator_jobs", "Iterator jobs by status.", ["status"])
        for status, n in sorted(snap.iterators.items()):
            iterators.add_metric([status], n)
        yield iterators
        bulk = _gauge("batchyard_bulk_jobs", "Bulk jobs by status.", ["status"])
        for status, n in sorted(snap.bulk_jobs.items()):
            bulk.add_metric([status], n)
        yield bulk
        yield _single("batchyard_bulk_items_left",
                      "Items of pending and processing bulk jobs not yet done.",
                      snap.bulk_items_left)

        lag_events = _gauge("batchyard_aggregator_lag_events",
                            "Events of the stream not yet folded.", ["aggregator"])
        lag_seconds = _gauge("batchyard_aggregator_lag_seconds",
                             "Age of the oldest event not yet folded.", ["aggregator"])
        parked = _gauge("batchyard_aggregator_parked_events",
                        "Events whose fold raised, waiting for a retry.", ["aggregator"])
        for agg in snap.aggregators:
            lag_events.add_metric([agg.name], agg.lag_events)
            lag_seconds.add_metric([agg.name], agg.lag_seconds)
            parked.add_metric([agg.name], agg.parked)
        yield lag_events
        yield lag_seconds
        yield parked

        workers = _gauge("batchyard_worker_heartbeat_age_seconds",
                         "Seconds since each registered worker's last heartbeat.", ["worker"])
        for worker in snap.workers:
            workers.add_metric([worker.id], worker.heartbeat_age_seconds)
        yield workers


def flush_recorded(reason: str, outcome: str, delivered: int, duration: float) -> None:
    """Count one recorded flush attempt (after its outcome committed)."""
    FLUSHES.labels(reason, outcome).inc()
    if delivered:
        FLUSHED_ITEMS.labels(reason).inc(delivered)
    FLUSH_DURATION.labels(outcome).observe(duration)


def registry_for(yard: Yard) -> CollectorRegistry:
    """A registry with this process's metrics and `yard`'s store gauges, for ``/metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    for metric in PROCESS_METRICS:
        registry.register(metric)
    registry.register(StoreCollector(yard))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _single(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
