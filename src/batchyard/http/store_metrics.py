"""The gauges `/metrics` reads from the store at scrape time, and the registry it serves.

Pending items, tasks by kind and state, oldest pending work, dead letters, iterator jobs,
aggregator lag, worker heartbeats: they describe every process sharing the store, so they
are never counted in memory - a scrape of any one server shows the truth of all of them.
The process's own counters (`batchyard.metrics`) are served beside them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchyard.errors import BatchyardError
from batchyard.metrics import PROCESS_METRICS
from batchyard.overview import Overview
from batchyard.yard import Yard

log = logging.getLogger("batchyard.metrics")


class StoreCollector(Collector):
    """Gauges computed from the store on every scrape (one read transaction)."""

    def __init__(self, yard: Yard) -> None:
        self.overview = Overview.of(yard)

    def describe(self) -> list[Metric]:
        # collect() reads the store: never at registration time
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "batchyard_store_up", "1 when the store answered this scrape, else 0."
        )
        try:
            snap = self.overview.snapshot()
        except BatchyardError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        batches = _gauge(
            "batchyard_batches",
            "Active batches (accumulating, flushing, dead) by status.",
            ["status"],
        )
        for status, n in sorted(snap.batches.items()):
            batches.add_metric([status], n)
        yield batches
        pending = _gauge(
            "batchyard_pending_items",
            "Items not yet delivered, by the status of their batch.",
            ["status"],
        )
        for status in ("accumulating", "flushing", "dead"):
            pending.add_metric([status], snap.pending_items.get(status, 0))
        yield pending
        yield _single(
            "batchyard_oldest_pending_age_seconds",
            "Age of the oldest batch not yet delivered (0 when none).",
            snap.oldest_pending_age_seconds or 0.0,
        )
        yield _single(
            "batchyard_oldest_due_task_age_seconds",
            "How long the longest-waiting due task has waited for a worker.",
            snap.oldest_due_task_age_seconds or 0.0,
        )

        tasks = _gauge("batchyard_tasks", "Live tasks by kind and state.", ["kind", "state"])
        stuck = _gauge(
            "batchyard_tasks_stuck",
            "Running tasks whose lease expired (their worker is gone).",
            ["kind"],
        )
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
        yield _single(
            "batchyard_bulk_items_left",
            "Items of pending and processing bulk jobs not yet done.",
            snap.bulk_items_left,
        )

        lag_events = _gauge(
            "batchyard_aggregator_lag_events",
            "Events of the stream not yet folded.",
            ["aggregator"],
        )
        lag_seconds = _gauge(
            "batchyard_aggregator_lag_seconds",
            "Age of the oldest event not yet folded.",
            ["aggregator"],
        )
        parked = _gauge(
            "batchyard_aggregator_parked_events",
            "Events whose fold raised, waiting for a retry.",
            ["aggregator"],
        )
        for agg in snap.aggregators:
            lag_events.add_metric([agg.name], agg.lag_events)
            lag_seconds.add_metric([agg.name], agg.lag_seconds)
            parked.add_metric([agg.name], agg.parked)
        yield lag_events
        yield lag_seconds
        yield parked

        in_flight = _gauge(
            "batchyard_handler_in_flight",
            "Calls of a limited handler running now, across every worker.",
            ["handler"],
        )
        waiting = _gauge(
            "batchyard_handler_waiting",
            "Tasks of a limited handler that are due and wait for room under its limits.",
            ["handler"],
        )
        for load in snap.handlers:
            in_flight.add_metric([load.handler], load.in_flight)
            waiting.add_metric([load.handler], load.waiting)
        yield in_flight
        yield waiting

        workers = _gauge(
            "batchyard_worker_heartbeat_age_seconds",
            "Seconds since each registered worker's last heartbeat.",
            ["worker"],
        )
        for worker in snap.workers:
            workers.add_metric([worker.id], worker.heartbeat_age_seconds)
        yield workers


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
